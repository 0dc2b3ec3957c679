"""The ``cach`` command: parse, call the pipeline, print. Only ``main`` exits.

Each subcommand lives in ``model_runtime/commands/<name>.py`` and exposes ``add_parser(subparsers)``
and ``run(args) -> int``. They are imported lazily so ``cach --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from model_runtime import __version__
from model_runtime.errors import CachError, missing_extra

#: subcommand -> one-line help; the module model_runtime.commands.<name> implements it
COMMANDS = {
    "features": "extract and cache frozen encoder features for a dataset",
    "train": "train hash heads (CACH, DUCH or DJSRH) on cached features",
    "eval": "evaluate hash heads on a dataset protocol",
    "results": "run the full benchmark (3 seeds x 4 bit lengths x 3 methods) and write docs/results.md",
    "index": "index folders of rasters into a hash index",
    "search": "search an index by text, tile or example image",
    "caption": "captions that best describe a tile or image",
    "adapt": "adapt an index's image head to its own archive (no labels) and re-hash it",
    "serve": "run the JSON-lines worker used by the QGIS plugin",
    "cache": "list the exported-graph cache with sizes, or prune it",
}


#: what ``cach --help`` tells a user (the module docstring is for developers)
DESCRIPTION = """\
Search archives of satellite and aerial rasters by text or by example, on this
machine. Index folders of rasters once (cach index), then ask for the tiles
that match words, a tile or an image (cach search); results can be written as
GeoPackage layers to open in QGIS over the rasters."""
EPILOG = """examples:
  cach index ~/imagery --index ~/imagery-index
  cach search --index ~/imagery-index --text "a harbour with boats" --gpkg hits.gpkg
  cach COMMAND --help     options of one command"""


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cach", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cach {__version__}")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="count", default=0,
                       help="more messages on stderr: -v progress notes, -vv debugging")
    noise.add_argument("-q", "--quiet", action="store_true",
                       help="errors only: no warnings, notes or progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if load == name:
            module = importlib.import_module(f"model_runtime.commands.{name}")
            module.add_parser(sub, help_text)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def log_level(args: argparse.Namespace) -> int:
    """WARNING by default; -v INFO, -vv DEBUG; --quiet ERROR. ``serve`` logs INFO by default:
    its stderr is the plugin's CACH log panel, not a terminal."""
    if args.quiet:
        return logging.ERROR
    if args.command == "serve" and not args.verbose:
        return logging.INFO
    return (logging.WARNING, logging.INFO)[args.verbose] if args.verbose < 2 else logging.DEBUG


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(load=command)
    args = parser.parse_args(argv)
    logging.basicConfig(level=log_level(args), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if not args.command:
        parser.print_help()
        return 2
    from model_runtime.env import configure_process

    configure_process()
    module = importlib.import_module(f"model_runtime.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except CachError as err:
        print(f"cach {args.command}: error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:  # an optional package absent (torch in the lean runtime)
        extra = missing_extra(err)
        if extra is None:
            raise
        print(f"cach {args.command}: error: {extra}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cach {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
