"""The one atomic-write helper: a temporary sibling, fsync, then rename over the target.

A reader sees the old file or the new one, never half of either; a full disk becomes
:class:`DiskFullError` and leaves the old file in place. Every file the runtime writes (heads,
caches, code indexes, exports) goes through :func:`atomic_write`.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from model_runtime.errors import DiskFullError


def temp_path(path: str | os.PathLike) -> Path:
    """A hidden sibling of ``path`` (same file system, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC from the OS, or a library's "disk is full" / "No space left" in its message."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left" in text or "disk is full" in text


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed onto ``path``.

    For writers that want a file name (faiss, safetensors, sqlite, numpy)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise DiskFullError(f"{path}: the disk is full; nothing was written.") from err
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], mode: int = 0o644) -> Path:
    """``write(tmp_path)`` then move it onto ``path`` atomically; returns ``path``."""
    with atomic_path(path, mode) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), mode)


def atomic_write_text(path: str | os.PathLike, text: str, mode: int = 0o644) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), mode)


def file_signature(path: str | os.PathLike, chunk: int = 1 << 16) -> str:
    """A cheap content signature of a local file: SHA-1 of its size and its first and last
    ``chunk`` bytes. Tells a touched-but-unchanged file, or a file replaced by garbage, from the
    one recorded, without reading it whole."""
    import hashlib

    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(chunk))
        if size > chunk:
            fh.seek(max(chunk, size - chunk))
            digest.update(fh.read(chunk))
    return digest.hexdigest()
