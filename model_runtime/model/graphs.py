"""The exported-graph cache: one folder per (backbone config, heads, engine + version, precision).

A folder is ``<cache>/graphs/<backbone>-<bits>b-<engine>-<precision>-<key16>/`` with the graph
files and a ``manifest.json`` that records the key parts and every file's SHA-256 and size. A
folder is used only when its manifest names the expected key and every file still has its
recorded hash; anything else (a half-copied file, a bit flip, a manifest from another export
format) is moved aside and rebuilt. A build writes into a hidden sibling folder (each file and
the manifest through :mod:`model_runtime.fsutil`) that is renamed into place in one step, so a
reader never sees half a folder and two processes exporting at once both end with a valid one.

No torch here: a cached folder is found and checked with the standard library alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from model_runtime.config import BackboneConfig, open_clip_model_cfg, resolve_path
from model_runtime.fsutil import atomic_write_text
from model_runtime.model.heads import HeadsRef
from model_runtime.paths import cache_dir, sha256_file

LOG = logging.getLogger(__name__)

#: bump when the exported graphs change meaning (inputs, outputs, wrapper code)
GRAPH_FORMAT = 1
MANIFEST = "manifest.json"


class GraphCacheError(Exception):
    """A cached folder is missing, stale or corrupt (internal: it triggers a rebuild)."""


def engine_version(distribution: str) -> str:
    """``name==version`` of an installed engine, read from package metadata (no import)."""
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return f"{distribution}==?"


def _weight_files(config: BackboneConfig) -> list[Path]:
    """The weight files the graphs are exported from (their identity joins the key)."""
    if config.open_clip is None:
        return [resolve_path(config.checkpoint)] if config.checkpoint else []
    files = [resolve_path(config.image_weights.path)] if config.image_weights else []
    text_dir = open_clip_model_cfg(config)["text_cfg"].get("hf_model_name")
    if text_dir and Path(text_dir).is_dir():
        files += sorted(Path(text_dir).glob("*.safetensors")) + sorted(Path(text_dir).glob("*.bin"))
    return files


def _file_identity(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}|missing"
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def key_parts(config: BackboneConfig, heads: HeadsRef, engine: str, precision: str,
              recipe: str = "") -> dict:
    """Everything an exported graph depends on; any change gives another folder. ``recipe``
    names how reduced-precision graphs are made (calibration set and method)."""
    cfg_json = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return {
        "format": GRAPH_FORMAT,
        "backbone": config.name,
        "backbone_config_sha256": hashlib.sha256(cfg_json.encode()).hexdigest(),
        "weights": [_file_identity(p) for p in _weight_files(config)],
        "heads_sha256": heads.sha,
        "bits": heads.bits,
        "proj_dim": heads.proj_dim,
        "engine": engine,
        "precision": precision,
        "recipe": recipe,
    }


@dataclass(frozen=True)
class GraphSet:
    """A verified cache folder: ``path(name)`` gives a graph file in it."""

    folder: Path
    manifest: dict[str, Any]
    #: seconds the export took when this process built it, else None (found in the cache)
    built_s: float | None = None

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def export_s(self) -> float | None:
        """Seconds the first export of this folder took (recorded in its manifest)."""
        value = self.manifest.get("export_s")
        return None if value is None else float(value)


def graph_folder(parts: dict, root: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    engine = parts["engine"].split("==")[0]
    name = f"{parts['backbone']}-{parts['bits']}b-{engine}-{parts['precision']}-{digest}"
    return (root or cache_dir() / "graphs") / name


def verify(folder: Path, parts: dict) -> dict:
    """The folder's manifest when it names ``parts`` and every file matches its hash."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise GraphCacheError(f"no readable manifest ({err})") from err
    if manifest.get("key") != parts:
        raise GraphCacheError("manifest is for another model, engine or export format")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise GraphCacheError("manifest lists no files")
    for name, entry in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            raise GraphCacheError(f"{name} is missing or has another size")
    # hashlib releases the GIL on large buffers: the files hash in parallel (start-up time)
    with ThreadPoolExecutor(max_workers=min(4, len(files))) as pool:
        digests = dict(zip(files, pool.map(lambda n: sha256_file(folder / n), files),
                           strict=True))
    for name, entry in files.items():
        if digests[name] != entry.get("sha256"):
            raise GraphCacheError(f"{name} does not match its checksum")
    return manifest


def _write_manifest(folder: Path, parts: dict, extra: dict) -> dict:
    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    manifest = {"key": parts, "files": files, "created": time.time(), **extra}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _discard(folder: Path) -> None:
    """Move a bad folder aside (one rename) and delete it."""
    if not folder.exists():
        return
    trash = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.bad")
    try:
        os.replace(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def _publish(tmp: Path, folder: Path, parts: dict) -> Path:
    """Rename the built folder into place; another process's valid folder wins a race."""
    try:
        os.replace(tmp, folder)
        return folder
    except OSError:
        try:
            verify(folder, parts)
        except GraphCacheError:
            _discard(folder)
            os.replace(tmp, folder)
            return folder
        shutil.rmtree(tmp, ignore_errors=True)
        return folder


def cached_graphs(
    parts: dict, build: Callable[[Path], dict], root: Path | None = None
) -> GraphSet:
    """The verified folder for ``parts``, built by ``build(tmp_folder) -> manifest extras`` when
    it is missing, stale or corrupt. ``build`` writes the graph files into ``tmp_folder``."""
    folder = graph_folder(parts, root)
    try:
        return GraphSet(folder, verify(folder, parts))
    except GraphCacheError as err:
        if folder.exists():
            LOG.warning("exported graphs in %s are unusable (%s): rebuilding", folder, err)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        start = time.perf_counter()
        extra = build(tmp)
        seconds = time.perf_counter() - start
        _write_manifest(tmp, parts, {**extra, "export_s": round(seconds, 2)})
        folder = _publish(tmp, folder, parts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    LOG.info("exported graphs to %s in %.1f s", folder, seconds)
    return GraphSet(folder, verify(folder, parts), built_s=seconds)
