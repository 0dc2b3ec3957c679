"""``cach serve --stdio``: the JSON-lines worker the QGIS plugin talks to (docs/protocol.md)."""

from __future__ import annotations

import argparse

from model_runtime.worker import add_arguments


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help=help_text, description=help_text)
    p.add_argument(
        "--stdio",
        action="store_true",
        required=True,
        help="speak the protocol on stdin/stdout (the only transport)",
    )
    add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from model_runtime.worker import serve_stdio

    return serve_stdio(args)
