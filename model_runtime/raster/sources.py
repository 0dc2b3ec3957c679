"""Which sources the paths a user named hold: files named directly, rasters under named folders,
objects under a named remote prefix, and what was skipped and why.

:func:`list_sources` gives each source once as a :class:`~.refs.SourceRef` (URI, size, version)
and a :class:`Skipped` for a broken link, a link loop, a pipe or device, a missing path, or a link
out of the named folders. A remote URI is listed by its store (:mod:`.stores`); nothing here
calls ``os.path.exists`` on a remote URI or reads a file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence

from model_runtime.errors import CachError
from model_runtime.protocol import Skipped
from model_runtime.raster.refs import SourceRef, is_remote_uri, unreadable
from model_runtime.raster.stores import store_for

#: the file extensions a folder listing takes as rasters (the content decides the driver)
RASTER_EXTENSIONS = (".tif", ".tiff", ".jp2", ".vrt", ".jpg", ".jpeg", ".png", ".img")


def list_sources(
    paths: Iterable[str | os.PathLike], allow_outside_sources: bool = False
) -> tuple[list[SourceRef], list[Skipped]]:
    """The sources under ``paths``: files named directly (any extension), plus files with a
    raster extension (:data:`RASTER_EXTENSIONS`) under named folders; hidden files and
    folders are left out, folder links are not followed (no loops). Sorted by URI, each once.

    Skipped, with a reason: a missing path (``file_not_found``); a broken link, a link loop,
    a pipe or device (``data_unreadable``); a link inside a named folder to a file outside all
    of them, unless ``allow_outside_sources`` (``source_refused``). A remote URI is listed by
    its registered store (``ConfigError`` without one)."""
    named = [os.fspath(p) for p in paths]
    roots = real_roots(named)
    refs: dict[str, SourceRef] = {}
    skipped: list[Skipped] = []
    for raw in named:
        if is_remote_uri(raw):
            found, skips = store_for(raw).list_sources(raw)
        else:
            found, skips = _list_local(raw, roots, allow_outside_sources)
        refs.update((r.uri, r) for r in found)
        skipped.extend(skips)
    return [refs[k] for k in sorted(refs)], skipped


def real_roots(paths: Iterable[str | os.PathLike]) -> tuple[str, ...]:
    """The folders a user named, as real paths: a named folder, or a named file's folder (both
    the link's and its target's). Remote URIs have none."""
    roots: list[str] = []
    for raw in paths:
        text = os.fspath(raw)
        if is_remote_uri(text):
            continue
        path = os.path.abspath(os.path.expanduser(text))
        if os.path.isdir(path):
            roots.append(os.path.realpath(path))
        else:
            roots += [os.path.realpath(os.path.dirname(path)),
                      os.path.dirname(os.path.realpath(path))]
    return tuple(dict.fromkeys(roots))


def _list_local(raw: str, roots, allow_outside: bool) -> tuple[list[SourceRef], list[Skipped]]:
    path = os.path.abspath(os.path.expanduser(raw))
    try:
        st = os.stat(path)
    except OSError as err:
        return [], [_skip(unreadable(path, err))]
    if stat.S_ISDIR(st.st_mode):
        return _walk(path, roots, allow_outside)
    ref, skip = _file_ref(path, roots, allow_outside=True)  # named directly: the user's choice
    return ([ref] if ref else []), ([skip] if skip else [])


def _walk(top: str, roots, allow_outside: bool) -> tuple[list[SourceRef], list[Skipped]]:
    refs: list[SourceRef] = []
    skipped: list[Skipped] = []

    def unlistable(err: OSError) -> None:
        skipped.append(Skipped(err.filename or top, f"{err.filename or top}: cannot list this "
                               f"folder ({err.strerror or err})", "data_unreadable"))

    # followlinks=False: a linked folder is not walked, so a link loop cannot trap the walk
    for root, dirs, files in os.walk(top, onerror=unlistable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(RASTER_EXTENSIONS):
                continue
            ref, skip = _file_ref(os.path.join(root, name), roots, allow_outside)
            refs += [ref] if ref else []
            skipped += [skip] if skip else []
    return refs, skipped


def _file_ref(path: str, roots, allow_outside: bool) -> tuple[SourceRef | None, Skipped | None]:
    try:
        st = os.stat(path)
    except OSError as err:  # a broken link or a link loop
        return None, _skip(unreadable(path, err))
    if not stat.S_ISREG(st.st_mode):
        return None, Skipped(path, f"{path}: not a regular file (a pipe, socket or device); "
                             "not read", "data_unreadable")
    real = os.path.realpath(path)
    if not allow_outside and not inside_roots(real, roots):
        return None, Skipped(path, f"{path}: links to {real}, outside the folders you named; "
                             "pass --allow-outside-sources to read it", "source_refused")
    return SourceRef(real, st.st_size, str(st.st_mtime_ns), st.st_mtime), None


def _skip(err: CachError) -> Skipped:
    return Skipped(str(err.details.get("path", "")), str(err), err.code)


def inside_roots(real: str, roots: Sequence[str]) -> bool:
    """True when the real path ``real`` is one of ``roots`` or lies under one."""
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
