"""This machine's measured indexing speed, remembered for dry-run estimates.

A run takes ``RUN_OVERHEAD_S`` (threads, commit, the code index), a cost per file (opening and
decoding it: 300 scene photos cost more than their 303 tiles alone) and a cost per tile
(reading and encoding), plus, when the worker has not loaded the model yet, the model load (its
graphs are built the first time). Each is measured apart: the recent runs' file and tile counts
and times are fitted by least squares; a rate that included the load made every later estimate
of a small run several times too long, and of a large one too short."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from model_runtime.fsutil import atomic_write_text
from model_runtime.paths import cache_dir

LOG = logging.getLogger(__name__)

#: tiles/s assumed before this machine has indexed anything
DEFAULT_TILES_PER_S = {"cpu": 60.0, "cuda": 400.0}
#: seconds to load the model (and build its graphs) assumed before one was measured
DEFAULT_LOAD_S = {"cpu": 4.0, "cuda": 10.0}
#: seconds every run takes besides its tiles (reader threads, commit, the code index)
RUN_OVERHEAD_S = 0.4
#: seconds per file assumed until runs of different shapes have been measured
DEFAULT_FILE_S = 0.01
#: how many recent runs the per-file and per-tile costs are fitted on
KEEP_RUNS = 6


def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def fit_costs(runs: list, per_tile_default: float) -> tuple[float, float]:
    """(seconds per file, seconds per tile) fitted to runs [files, tiles, seconds] (least
    squares, both >= 0); with runs of one shape only, the per-file cost is the default."""
    sff = sum(f * f for f, _, _ in runs)
    stt = sum(t * t for _, t, _ in runs)
    sft = sum(f * t for f, t, _ in runs)
    sfs = sum(f * s for f, _, s in runs)
    sts = sum(t * s for _, t, s in runs)
    det = sff * stt - sft * sft
    if runs and det > 1e-6 * sff * stt:
        per_file, per_tile = (sfs * stt - sts * sft) / det, (sts * sff - sfs * sft) / det
        if per_file >= 0 and per_tile > 0:
            return per_file, per_tile
    if not runs or stt == 0:
        return DEFAULT_FILE_S, per_tile_default
    per_file = DEFAULT_FILE_S
    rest = sum(max(s - f * per_file, 0.0) * t for f, t, s in runs)
    return per_file, max(rest / stt, 1e-5)


class SpeedLog:
    """``speed.json`` in the cache: tiles/s per backbone and device kind."""

    def __init__(self, backbone: str, path: Path | None = None) -> None:
        self.backbone = backbone
        self._path = path

    @property
    def path(self) -> Path:
        return self._path or cache_dir() / "speed.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def images_per_s(self, device: str) -> float:
        kind = _device_kind(device)
        try:
            return float(self._read()[f"{self.backbone}/{kind}"])
        except (KeyError, TypeError, ValueError):
            return DEFAULT_TILES_PER_S[kind]

    def load_seconds(self, device: str) -> float:
        """Seconds to load the model on this machine (the last measured load)."""
        kind = _device_kind(device)
        try:
            return float(self._read()[f"{self.backbone}/{kind}/load_s"])
        except (KeyError, TypeError, ValueError):
            return DEFAULT_LOAD_S[kind]

    def record_run(self, device: str, tiles: int, seconds: float, load_s: float = 0.0,
                   files: int = 0) -> None:
        """Learn from a run: its work time without the overhead and the model load."""
        kind = _device_kind(device)
        work_s = max(seconds - load_s - RUN_OVERHEAD_S, 0.05 * seconds, 1e-3)
        self.record(device, tiles / work_s)
        runs = [r for r in self._read().get(f"{self.backbone}/{kind}/runs", []) if len(r) == 3]
        self._write(f"{self.backbone}/{kind}/runs",
                    [*runs, [int(files), int(tiles), round(work_s, 3)]][-KEEP_RUNS:])
        if load_s > 0:
            self._write(f"{self.backbone}/{kind}/load_s", round(load_s, 2))

    def work_seconds(self, device: str, files: int, tiles: int) -> float:
        """Seconds to read and encode ``tiles`` tiles of ``files`` files on this machine."""
        kind = _device_kind(device)
        runs = self._read().get(f"{self.backbone}/{kind}/runs") or []
        per_file, per_tile = fit_costs([r for r in runs if len(r) == 3],
                                       1.0 / self.images_per_s(device))
        return files * per_file + tiles * per_tile

    def record(self, device: str, tiles_per_s: float) -> None:
        self._write(f"{self.backbone}/{_device_kind(device)}", round(tiles_per_s, 2))

    def _write(self, key: str, value) -> None:  # noqa: ANN001 - a JSON value
        known = self._read()
        known[key] = value
        try:
            atomic_write_text(self.path, json.dumps(known))
        except OSError as err:
            LOG.debug("could not record indexing speed: %s", err)
