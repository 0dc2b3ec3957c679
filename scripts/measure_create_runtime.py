#!/usr/bin/env python3
"""Dev tool (not a test): time the plugin's *Create runtime ▸ Standard (CPU)* in real QGIS, as a
new user meets it, and photograph the dialog with the size it shows before anything downloads.

    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python scripts/measure_create_runtime.py \
        [--shot docs/img/runtime-create.png] [--keep]

It builds the plugin zip (scripts/make_zip.py) and unpacks it into a new plugins folder, so the
plugin has no .venv beside it, runs with HOME pointing to a new empty folder (pip's download
cache is kept through PIP_CACHE_DIR, default the real ~/.cache/pip, as .ci/run does), opens the
Runtime settings dialog, chooses Standard (CPU) and presses *Create runtime…*. It times the click
to the ready marker, then presses *Test runtime* (the worker starts, finds no graphs in the empty
home and builds them, loads the model and answers) and times that too. It prints one JSON
object: the size the dialog showed, the seconds, the runtime's size on disk (du), whether it
holds any torch, nvidia-* or triton package, and what pip downloaded (from cach-install.log).
The temporary folder is removed unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(r"^(torch|nvidia|triton)", re.IGNORECASE)


def parent(args: argparse.Namespace) -> int:
    """Prepare an empty home and a zip-installed plugin, then run the measurement in a child."""
    work = Path(tempfile.mkdtemp(prefix="cach-measure-"))
    home, plugins, xdg = work / "home", work / "plugins", work / "xdg"
    for folder in (home, plugins, xdg):
        folder.mkdir(mode=0o700)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_zip.py"), "-o",
                    str(work / "plugin.zip")], check=True)
    with zipfile.ZipFile(work / "plugin.zip") as zf:
        zf.extractall(plugins)
    env = dict(os.environ)
    for name in ("CACH_RUNTIME_PYTHON", "CACH_CACHE", "VIRTUAL_ENV", "XDG_CACHE_HOME",
                 "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PYTHONPATH"):
        env.pop(name, None)
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(xdg))
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    child = [sys.executable, __file__, "--child", str(work)]
    if args.shot:
        child += ["--shot", str(Path(args.shot).resolve())]
    try:
        return subprocess.run(child, env=env, cwd=str(work)).returncode
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def wait(app, cond, timeout_s: float, what: str) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def du(path: Path) -> tuple[int, str]:
    size = int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    human = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True,
                           check=True).stdout.split()[0]
    return size, human


def downloads(log_file: Path) -> dict:
    """What pip fetched from an index (``Downloading x (N MB)``) or took from its cache."""
    text = log_file.read_text(errors="replace")
    sizes = re.findall(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", text)
    scale = {"kB": 1e-3, "MB": 1.0, "GB": 1e3}
    return {
        "downloaded_files": len(sizes),
        "downloaded_mb": round(sum(float(n) * scale[u] for n, u in sizes), 1),
        "from_cache_or_local": len(re.findall(r"(Using cached|Processing /)", text)),
    }


def forbidden_packages(venv: Path) -> list[str]:
    return sorted(p.name for p in venv.glob("lib/python*/site-packages/*") if FORBIDDEN.match(p.name))


def child(work: Path, shot: str | None) -> int:
    sys.path.insert(0, str(work / "plugins"))
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    from cach_for_qgis.cach_qgis import settings
    from cach_for_qgis.cach_qgis.dialogs import RuntimeDialog
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient

    client = RuntimeClient()
    dialog = RuntimeDialog(client)
    dialog.show()
    dialog.kind.setCurrentIndex(dialog.kind.findData("lean"))
    app.processEvents()
    before = {"found": dialog.found.text(), "size": dialog.kind_size.text(),
              "kind": dialog.kind.currentText()}
    if shot:
        time.sleep(0.3)
        app.processEvents()
        Path(shot).parent.mkdir(parents=True, exist_ok=True)
        dialog.grab().save(shot)
    done: list[tuple[bool, str]] = []
    t0 = time.monotonic()
    dialog.create_button.click()
    installer = dialog.installer
    installer.finished.connect(lambda ok, msg: done.append((ok, msg)))
    wait(app, lambda: bool(done), 1800, "Create runtime")
    t_created = time.monotonic() - t0
    target = installer.target
    result = {"plugin_dir": str(settings.PLUGIN_DIR), "before_click": before,
              "base_python": installer.base_python, "target": str(target),
              "created": done[0], "create_s": round(t_created, 1),
              "ready_marker": (target / settings.READY_MARKER).is_file(),
              "resolved_python": settings.resolve_runtime_python(),
              "found_after": dialog.found.text()}
    answered: list[tuple[bool, object]] = []
    t1 = time.monotonic()
    req = dialog.test()  # what the Test runtime button runs
    req.succeeded.connect(lambda r: answered.append((True, r)))
    req.failed.connect(lambda e: answered.append((False, str(e))))
    wait(app, lambda: bool(answered), 900, "Test runtime")
    t_test = time.monotonic() - t1
    app.processEvents()
    result.update(test_ok=answered[0][0], test_s=round(t_test, 1),
                  click_to_ready_s=round(time.monotonic() - t0, 1),
                  device_label=dialog.device.text(), worker_python=client.python)
    if shot:
        dialog.grab().save(str(work / "after.png"))
    client.shutdown()
    size, human = du(target)
    result.update(disk_bytes=size, disk_du_h=human, forbidden=forbidden_packages(target),
                  **downloads(target / "cach-install.log"))
    cache = Path.home() / ".cache" / "cach"
    if cache.exists():
        result["graph_cache_du_h"] = du(cache)[1]
    print(json.dumps(result, indent=2, default=str), flush=True)
    ok = done[0][0] and result["ready_marker"] and answered[0][0] and not result["forbidden"]
    os._exit(0 if ok else 1)  # no QGIS teardown questions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shot", help="PNG of the dialog before the click")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(Path(args.child), args.shot)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
