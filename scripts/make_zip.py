#!/usr/bin/env python3
"""Build the plugin zip for the QGIS plugin repository (or "Install from ZIP"), unattended.

    python3 scripts/make_zip.py              # writes cach_for_qgis.zip in the repository root
    python3 scripts/make_zip.py -o DIR/x.zip

The zip holds one folder named after pb_tool.cfg's [plugin] name, with the files and folders
pb_tool.cfg lists ([files] python_files, extras, extra_dirs; minus excluded_files), restricted to
what git tracks, so caches, virtual environments and local outputs never slip in. Unlike
``pb_tool zip`` it asks nothing, needs no terminal and never deploys into a QGIS profile; it needs
only Python's standard library and git. The Qt resources are the committed
cach_qgis/resources_rc.py (scripts/setup_qgis.sh regenerates it).
"""

from __future__ import annotations

import argparse
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
#: never shipped, whatever a config lists
NEVER = {"__pycache__", "tests", ".pytest_cache", ".ruff_cache"}


def plugin_files(root: Path = ROOT) -> tuple[str, list[str]]:
    """(plugin folder name, sorted repository paths to ship) from pb_tool.cfg and git."""
    cfg = configparser.ConfigParser()
    cfg.read(root / "pb_tool.cfg", encoding="utf-8")
    files = cfg["files"]
    listed = [*files.get("python_files", "").split(), *files.get("extras", "").split()]
    dirs = files.get("extra_dirs", "").split()
    excluded = set(files.get("excluded_files", "").split())
    try:
        tracked = subprocess.run(["git", "ls-files", "-z", "--", *listed, *dirs], cwd=root,
                                 capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"make_zip: needs git and a git checkout, as it ships the files git "
                         f"tracks ({err})") from None
    ship = []
    for name in filter(None, tracked):
        parts = PurePosixPath(name).parts
        if name in excluded or NEVER & set(parts) or parts[-1].endswith((".pyc", ".pyo")):
            continue
        if (root / name).is_file():  # tracked but deleted in the working tree: not shipped
            ship.append(name)
    missing = [n for n in listed if n not in ship]
    if missing:
        raise SystemExit(f"make_zip: pb_tool.cfg lists files git does not track: {missing}")
    return cfg["plugin"]["name"].strip(), sorted(ship)


def build(out: Path, root: Path = ROOT) -> Path:
    """Write the zip to ``out`` (through a temporary file, so a failure leaves no half zip)."""
    top, names = plugin_files(root)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            zf.write(root / name, f"{top}/{name}")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="zip to write (default: "
                        "<repository>/<plugin name>.zip)")
    args = parser.parse_args(argv)
    top, names = plugin_files()
    out = args.output or ROOT / f"{top}.zip"
    build(out)
    print(f"make_zip: {out} ({len(names)} files, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
