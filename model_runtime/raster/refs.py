"""What identifies a source without reading it: :class:`SourceRef` (URI, size, version), the
URI forms GDAL opens, and a cheap content signature.

Nothing here calls ``os.path.exists`` on a remote URI or reads a whole file.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from model_runtime.errors import DataError
from model_runtime.fsutil import file_signature

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class SourceRef:
    """One source: ``uri`` (a local file's real absolute path, or ``s3://bucket/key``), its
    ``size`` and ``version`` (local: the mtime in integer nanoseconds, as text; remote: the
    ETag). ``mtime`` (seconds) is kept for stores written before ``version`` existed. Its
    identity never needs the file read."""

    uri: str
    size: int
    version: str
    mtime: float = 0.0

    @property
    def is_remote(self) -> bool:
        return is_remote_uri(self.uri)

    @property
    def gdal_path(self) -> str:
        """The name GDAL opens: the path itself, or ``/vsis3/bucket/key`` for ``s3://``."""
        return gdal_path(self.uri)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


def is_remote_uri(text: str) -> bool:
    """True for ``scheme://...`` and GDAL ``/vsi...`` names: never judged by a path check."""
    return bool(_SCHEME.match(text)) or text.startswith("/vsi")


def gdal_path(uri: str) -> str:
    """``s3://b/k`` -> ``/vsis3/b/k`` (likewise ``gs://``, ``az://``); anything else as is."""
    for scheme, vsi in (("s3://", "/vsis3/"), ("gs://", "/vsigs/"), ("az://", "/vsiaz/")):
        if uri.startswith(scheme):
            return vsi + uri[len(scheme):]
    return uri


def local_ref(path: str | os.PathLike) -> SourceRef:
    """The :class:`SourceRef` of a local file (``OSError`` when it cannot be stat'ed)."""
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    return SourceRef(real, st.st_size, str(st.st_mtime_ns), st.st_mtime)


def as_ref(source: SourceRef | str | os.PathLike) -> SourceRef:
    """A :class:`SourceRef` for a ref, a remote URI (size and version unknown) or a local
    path (``DataError`` ``file_not_found`` when it is gone)."""
    if isinstance(source, SourceRef):
        return source
    text = os.fspath(source)
    if is_remote_uri(text):
        return SourceRef(text, -1, "")
    try:
        return local_ref(text)
    except OSError as err:
        raise unreadable(text, err) from err


def unreadable(path: str, err: OSError) -> DataError:
    """The ``DataError`` for a path that cannot be stat'ed, worded for links too."""
    if os.path.islink(path):
        if err.errno == errno.ELOOP:
            return DataError(f"{path}: a symbolic link loop (following it leads back to a "
                             "link already followed); not read", code="data_unreadable", path=path)
        target = _readlink(path)
        return DataError(f"{path}: a broken symbolic link (its target {target} does not "
                         "exist); not read", code="data_unreadable", path=path)
    if err.errno == errno.ENOENT:
        return DataError(f"{path}: no such file or folder", code="file_not_found", path=path)
    return DataError(f"{path}: cannot be read ({err.strerror or err})", code="data_unreadable",
                     path=path)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def quick_signature(source: SourceRef | str | os.PathLike) -> str:
    """A cheap content signature: SHA-1 of the size and the first and last 64 KiB for a local
    file (tells a touched-but-unchanged file from a changed one without reading it whole); the
    ETag for a remote object."""
    ref = as_ref(source)
    if ref.is_remote:
        return f"etag:{ref.version}"
    return file_signature(ref.uri)


#: the name the index builder uses
source_signature = quick_signature
