"""Where things live: bundled resources, the data root, the on-disk cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from model_runtime.settings import current

#: the repository root is the QGIS plugin folder; model_runtime sits directly inside it
PLUGIN_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = PLUGIN_ROOT / "resources"
MODEL_CONFIGS = RESOURCES / "models"
HEADS_DIR = RESOURCES / "heads"
SAMPLES_DIR = RESOURCES / "samples"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """``--data-root`` if given, else ``$CACH_DATA``, else ``../shared/data`` beside the plugin."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = current().data
    if env:
        return Path(env).expanduser().resolve()
    return (PLUGIN_ROOT.parent / "shared" / "data").resolve()


def cache_dir(create: bool = True) -> Path:
    """Feature caches and derived artefacts: ``$CACH_CACHE`` or ``$XDG_CACHE_HOME/cach``
    (made unless ``create`` is false)."""
    env = current().cache
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "cach"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (weights, heads and caption banks are checked by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
