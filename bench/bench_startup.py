"""Worker start-up: spawn ``.venv/bin/cach serve --stdio`` -> ``ready`` -> ``loaded`` (model
loaded and warmed up), median of ``--repeat`` spawns per backend, with the exported graphs
already in the cache; then the first export alone (a fresh cache folder), and which heavy
modules the worker's job process imported (``status``'s view is not enough: measured by a
search in a child with ``-X importtime`` would be noisier, so the model stack is checked by
importing the compiled backend in a clean interpreter).

    .venv/bin/python bench/bench_startup.py                 # onnx, openvino, torch
    .venv/bin/python bench/bench_startup.py --backends onnx --repeat 5

Goal (issue 8): spawn -> ``loaded`` <= 2 s on the compiled backend with cached graphs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from tables import table  # noqa: E402  (bench/ runs as scripts)

CACH = ROOT / ".venv" / "bin" / "cach"
TIMEOUT_S = 600


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spawn_once(backend: str, env: dict | None = None) -> dict[str, float]:
    """Seconds from spawn to the ``ready`` and ``loaded`` events of one worker, and the CPU
    seconds its processes used from spawn to exit (start-up + shutdown: a figure the load of
    the machine does not inflate the way it inflates wall time)."""
    cmd = [str(CACH), "serve", "--stdio", "--backend", backend]
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    times: dict[str, float] = {}
    try:
        for line in proc.stdout:
            msg = json.loads(line)
            event = msg.get("event")
            if event in ("ready", "loaded", "load_failed"):
                times[event] = time.perf_counter() - start
            if event == "loaded":
                times["backend"] = msg["data"].get("backend")
                break
            if event == "load_failed" or time.perf_counter() - start > TIMEOUT_S:
                raise RuntimeError(f"worker did not load: {msg}")
        proc.stdin.write(json.dumps({"id": 1, "op": "shutdown"}) + "\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    times["cpu"] = _children_cpu() - cpu0
    return times


def first_export(backend: str) -> float:
    """Seconds a model load takes with an empty graph cache (the one-off export)."""
    code = ("import time; t = time.perf_counter()\n"
            "from model_runtime.model import load_model\n"
            f"m = load_model(backend={backend!r}, bits=64)\n"
            "print(m.first_export_s, time.perf_counter() - t)")
    with tempfile.TemporaryDirectory(prefix="cach-bench-export-") as tmp:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT, env={**os.environ, "CACH_CACHE": tmp}, check=True)
    return float(out.stdout.split()[0])


def heavy_imports(backend: str) -> str:
    """Heavy modules a compiled model load + one text encoding imports (none expected)."""
    code = ("import sys\nfrom model_runtime.model import load_model\n"
            f"m = load_model(backend={backend!r}, bits=64); m.encode_texts(['a river'])\n"
            "print(','.join(x for x in ('torch', 'transformers', 'open_clip', 'timm') "
            "if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return out.stdout.strip() or "none"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="onnx,openvino,torch")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-export", action="store_true", help="skip the first-export timing")
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for backend in args.backends.split(","):
        spawn_once(backend)  # graphs exported and OS file cache warm before timing
        runs = [spawn_once(backend) for _ in range(args.repeat)]
        ready = statistics.median(r["ready"] for r in runs)
        loaded = statistics.median(r["loaded"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        compiled = backend != "torch"
        export = (f"{first_export(backend):.1f}" if compiled and not args.no_export else "-")
        rows.append([backend, runs[0].get("backend"), f"{ready:.2f}", f"{loaded:.2f}",
                     f"{cpu:.2f}",
                     ("yes" if loaded <= 2.0 else "NO") if compiled else "-", export,
                     heavy_imports(backend) if compiled else "(torch backend)"])
        print(f"  {backend} done", file=sys.stderr, flush=True)
    table(f"worker start-up, median of {args.repeat} spawns, graphs cached",
          ["asked", "backend used", "spawn -> ready s", "spawn -> loaded s",
           "CPU s of the worker's processes", "loaded <= 2 s",
           "first export s", "heavy modules imported"], rows)
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (noisy when above the core count)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
