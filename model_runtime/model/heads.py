"""Which heads file a model uses, known without torch: by bit length (the shipped heads), by an
explicit path, or by the SHA-256 an index recorded (adapted heads in the index folder, archived
heads of an earlier release under ``resources/heads/``)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_runtime.errors import ConfigError, DataError, ModelMismatchError
from model_runtime.paths import HEADS_DIR, sha256_file
from model_runtime.protocol import DEFAULT_BITS, ModelInfo

#: heads files inside an index folder (adapted heads belong to that index)
INDEX_HEADS_DIR = "heads"


@dataclass(frozen=True)
class HeadsRef:
    """A heads file and its identity: what an index records and a model is built from."""

    path: Path
    sha: str
    backbone: str
    bits: int
    method: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def proj_dim(self) -> int:
        """Size of the stored image-feature projection (0: these heads have none)."""
        return int(self.meta.get("proj_dim") or 0)

    def info(self, **runtime: str | None) -> ModelInfo:
        """The :class:`ModelInfo` of these heads; ``runtime`` adds backend/precision/device."""
        return ModelInfo(self.backbone, self.bits, self.sha, self.method, self.path.name, **runtime)


_CACHE: dict[tuple[str, int, float], HeadsRef] = {}
_LOCK = threading.Lock()


def read_heads(path: str | os.PathLike) -> HeadsRef:
    """Read a heads file's metadata and hash (cached by path, size and mtime)."""
    from model_runtime.model.heads_format import read_metadata

    path = Path(path).expanduser().resolve()
    try:
        stat = path.stat()
    except OSError as err:
        raise DataError(f"Hash-head weights not found: {path}", code="heads_unreadable") from err
    key = (str(path), stat.st_size, stat.st_mtime)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    try:
        meta = read_metadata(path)
    except DataError as err:
        raise DataError(str(err), code="heads_unreadable") from err
    ref = HeadsRef(path, sha256_file(path), str(meta["backbone"]), int(meta["bits"]),
                   str(meta.get("method") or "?"), meta)
    with _LOCK:
        _CACHE[key] = ref
    return ref


def shipped_heads(backbone: str, bits: int | None = None) -> HeadsRef:
    """The shipped heads of ``backbone`` at ``bits`` (default 64)."""
    from model_runtime.model.heads_format import shipped_heads_path

    bits = int(bits or DEFAULT_BITS)
    path = shipped_heads_path(bits, backbone)
    if not path.is_file():
        raise ConfigError(
            f"No shipped {bits}-bit heads for backbone '{backbone}'. Choose 16, 32, 64 or 128 "
            "bits, or train heads for this backbone ('cach train').", code="no_heads")
    return read_heads(path)


def resolve_heads(backbone: str, bits: int | None = None, heads: str | os.PathLike | None = None
                  ) -> HeadsRef:
    """Explicit ``heads`` (checked against backbone and bits), else the shipped heads."""
    if heads is None:
        return shipped_heads(backbone, bits)
    ref = read_heads(heads)
    if ref.backbone != backbone:
        raise ModelMismatchError(
            f"{ref.path} was trained for backbone '{ref.backbone}', but '{backbone}' is in use: "
            "choose heads trained for this backbone or retrain with 'cach train'.")
    if bits is not None and ref.bits != int(bits):
        raise ModelMismatchError(f"{ref.path} holds {ref.bits}-bit heads, but {bits} bits "
                                 "were requested.")
    return ref


def find_heads(sha: str, search_dirs: list[Path] | None = None) -> HeadsRef | None:
    """The heads file whose SHA-256 is ``sha`` among ``search_dirs`` (then every heads file under
    ``resources/heads``, archived ones included); None when no file has it."""
    dirs = list(search_dirs or []) + [HEADS_DIR]
    for folder in dirs:
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).rglob("*.safetensors")):
            try:
                ref = read_heads(path)
            except DataError:
                continue
            if ref.sha == sha:
                return ref
    return None


def index_heads_dir(index_dir: str | os.PathLike) -> Path:
    """Where an index keeps heads that belong to it (adapted to its archive)."""
    return Path(index_dir) / INDEX_HEADS_DIR
