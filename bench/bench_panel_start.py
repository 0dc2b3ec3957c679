"""The first search typed 3 s after the search panel opens: the panel starts the worker (now)
against the worker started by the first search (before), measured in one run.

Run in QGIS's Python, headless (it needs the runtime made by scripts/setup.sh):

    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python bench/bench_panel_start.py [--runs 3]
        [--index DIR] [--runtime .venv/bin/python] [--delay 3]

Each run starts a fresh worker (a cold start, as after opening QGIS; the exported graphs and
feature caches on disk stay warm, as they would on a user's machine). Timed: from pressing
Search to the result layers on the map. Goal: under 1 s with the panel starting the worker.
Without --index, an index of resources/samples is built first (not timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tables.py
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="cach-bench-qgis-")  # no user settings
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tables import table  # noqa: E402

QUERIES = (
    "a parking lot with cars",
    "a residential area with houses",
    "farmland with crops",
    "a river next to trees",
    "a road crossing fields",
    "a baseball field",
)
GOAL_S = 1.0


def plugin_package() -> None:
    """Import the plugin as QGIS does: the package ``cach_for_qgis`` (a link to the repo)."""
    folder = Path(tempfile.mkdtemp(prefix="cach-plugins-"))
    (folder / "cach_for_qgis").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(folder))


def wait(predicate, timeout_s: float) -> bool:  # noqa: ANN001
    from qgis.core import QgsApplication

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        QgsApplication.processEvents()
        time.sleep(0.002)
    return True


def build_index(runtime: str) -> str:
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient

    index = str(Path(tempfile.mkdtemp(prefix="cach-bench-index-")) / "idx")
    client = RuntimeClient(python=runtime)
    params = {"index": index, "paths": [str(ROOT / "resources" / "samples")]}
    client.call("index", params, timeout_s=1800)
    client.shutdown()
    return index


def first_search(runtime: str, index: str, query: str, delay_s: float, panel_starts: bool):
    """One cold start: open the panel, wait ``delay_s`` (typing), search; seconds to results."""
    from cach_for_qgis.cach_qgis.dock import SearchDock
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient

    client = RuntimeClient(python=runtime)
    opened = time.monotonic()
    loaded: list[float] = []
    client.modelLoaded.connect(lambda _model: loaded.append(time.monotonic() - opened))
    dock = SearchDock(None, client)
    dock.set_index_path(index)
    if not panel_starts:  # the old behaviour: nothing starts until the first search
        dock.start_runtime = lambda: None
    dock.show()
    wait(lambda: False, delay_s)  # the user types for delay_s, the event loop runs
    state_at_search = client.state
    shown: list = []
    dock.resultsShown.connect(shown.append)
    dock.query_edit.setText(query)
    start = time.monotonic()
    req = dock.search()
    ok = wait(lambda: shown or (req.done and req.error is not None), 600)
    seconds = time.monotonic() - start
    error = req.error or (None if ok else "timed out")
    timing = dict((req.result or {}).get("timing_ms") or {})
    timing["loaded_after_open"] = 1000 * loaded[0] if loaded else float("nan")
    dock.hide()
    client.shutdown()
    dock.deleteLater()
    return seconds, state_at_search, error, timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--delay", type=float, default=3.0, help="seconds between open and search")
    parser.add_argument("--index", help="an index folder (default: build one of the samples)")
    parser.add_argument("--runtime", default=str(ROOT / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    plugin_package()
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    index = args.index or build_index(args.runtime)
    rows = {True: [], False: []}
    for run in range(args.runs):
        for panel_starts in (True, False):  # alternate, so load drifts hit both alike
            query = f"{QUERIES[run % len(QUERIES)]} {run}{int(panel_starts)}"
            rows[panel_starts].append(
                first_search(args.runtime, index, query, args.delay, panel_starts)
            )
    report(rows, args)
    app.exitQgis()
    return 0


ROUTES = (
    (False, "worker starts on the first search (before)"),
    (True, "panel starts the worker when shown (now)"),
)


def report(rows: dict, args: argparse.Namespace) -> None:
    body = []
    for panel_starts, label in ROUTES:
        runs = rows[panel_starts]
        seconds = [r[0] for r in runs if not r[2]]
        median = statistics.median(seconds) if seconds else float("nan")
        goal = "-" if not panel_starts else ("yes" if seconds and median < GOAL_S else "no")
        body.append(
            [
                label,
                f"{median:.2f}",
                " ".join(f"{s:.2f}" for s in seconds) or "-",
                ",".join(sorted({r[1] for r in runs})),
                goal,
                "; ".join(str(r[2]) for r in runs if r[2])[:80] or "-",
            ]
        )
    table(
        f"First search typed {args.delay:.0f} s after the panel opens "
        f"(median of {args.runs}, cold worker each run; goal < {GOAL_S:.0f} s)",
        ["route", "median s", "runs s", "worker at search", "goal", "errors"],
        body,
    )
    report_parts(rows)


def report_parts(rows: dict) -> None:
    """Where the first search's time goes: the worker's own timing, and the rest (waiting for
    the worker to start or to finish loading the model, the round trip, the layers)."""
    parts = ("loaded_after_open", "load", "open", "encode_text", "search", "assess", "total")
    body = []
    for panel_starts, label in ROUTES:
        runs = [r for r in rows[panel_starts] if not r[2]]
        if not runs:
            continue
        cells = []
        for part in parts:
            values = [r[3][part] for r in runs if part in r[3]]
            cells.append(f"{statistics.median(values):.0f}" if values else "-")
        rest = [
            1000 * r[0] - float(r[3].get("total", 0)) - float(r[3].get("load", 0)) for r in runs
        ]
        body.append([label, *cells, f"{statistics.median(rest):.0f}"])
    table(
        "Where the first search's time goes (median ms; worker's timing_ms, then the rest)",
        ["route", *parts, "rest (start, model preload, layers)"],
        body,
    )


if __name__ == "__main__":
    sys.exit(main())
