"""This machine's measured indexing speed, remembered for dry-run estimates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from model_runtime.fsutil import atomic_write_text
from model_runtime.paths import cache_dir

LOG = logging.getLogger(__name__)

#: tiles/s assumed before this machine has indexed anything
DEFAULT_TILES_PER_S = {"cpu": 40.0, "cuda": 400.0}


def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


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

    def record(self, device: str, tiles_per_s: float) -> None:
        known = self._read()
        known[f"{self.backbone}/{_device_kind(device)}"] = round(tiles_per_s, 2)
        try:
            atomic_write_text(self.path, json.dumps(known))
        except OSError as err:
            LOG.debug("could not record indexing speed: %s", err)
