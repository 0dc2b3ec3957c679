"""Before an index run: list the sources, refuse what must not be read, and sort the rest into
new, changed, resumed, unchanged and gone, against what the store already holds.

:func:`scan_sources` only reads (directory entries, file headers, the store), so a dry run and
the confirmation of a large run change nothing; :func:`apply_scan` then records what the scan
found (gone files dropped, touched files' new identity, refused files' old tiles removed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from model_runtime.errors import CachError
from model_runtime.index.roots import root_of
from model_runtime.index.store import SourceRow, Store
from model_runtime.protocol import Skipped
from model_runtime.raster.checks import check_source
from model_runtime.raster.refs import source_signature
from model_runtime.raster.sources import list_sources, real_roots
from model_runtime.raster.tiling import TilingOptions, count_windows

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Todo:
    """A source this run must (re-)encode. ``done`` holds keys of units already committed
    (a resumed source); ``status`` is ``added``, ``updated`` or ``resumed``."""

    source: Any  # refs.SourceRef
    status: str
    done: frozenset[str] = frozenset()
    signature: str = ""
    extra: dict = field(default_factory=dict)
    #: windows still to read (from the header), for progress totals and confirmation
    windows: int = 0


@dataclass
class Scan:
    todo: list[Todo] = field(default_factory=list)
    unchanged: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    vrt_sources: dict[str, list[str]] = field(default_factory=dict)
    #: what apply_scan records: stored sources to drop (gone, refused, re-tiled) and touched
    #: sources' new identities
    drop: list[str] = field(default_factory=list)
    touched: list[Any] = field(default_factory=list)
    #: roots this run added to the index (set when the run begins)
    roots_added: list[str] = field(default_factory=list)

    @property
    def new_tiles(self) -> int:
        return sum(t.windows for t in self.todo)


def _status(row: SourceRow | None, ref: Any, retile: bool, store: Store | None,
            scan: Scan) -> tuple[str, frozenset]:
    """``(status, done unit keys)``; status ``unchanged`` means nothing to do."""
    if row is None:
        return "added", frozenset()
    if retile:
        return "updated", frozenset()
    if (row.size, row.version) == (ref.size, str(ref.version)):
        if row.status == "done":
            return "unchanged", frozenset()
        return "resumed", frozenset(store.done_units(ref.uri) if store else ())
    if row.status == "done" and row.size == ref.size and _same_content(row, ref):
        scan.touched.append(ref)
        return "unchanged", frozenset()
    return "updated", frozenset()


def _same_content(row: SourceRow, ref: Any) -> bool:
    """A touched file: same size and mtime as a version-1 row, or the same content signature."""
    if row.version is None and row.mtime == float(getattr(ref, "mtime", -1)):
        return True
    try:
        return source_signature(ref) == row.sha1
    except OSError:
        return False


def _check(ref: Any, roots: list[str], allow_outside: bool, scan: Scan) -> dict | None:
    """The source's extra metadata (files a VRT reads), or None when it is refused."""
    try:
        reads = check_source(ref, roots, allow_outside)
    except CachError as err:
        scan.skipped.append(Skipped(ref.uri, str(err), err.code))
        return None
    if reads:
        scan.vrt_sources[ref.uri] = list(reads)
        return {"reads": list(reads)}
    return {}


def _windows(ref: Any, options: TilingOptions, done: frozenset, row: SourceRow | None) -> int:
    total = count_windows(ref.gdal_path, options)
    if done and row is not None:
        return max(0, total - row.tiles)  # committed tiles <= committed windows: an upper bound
    return total


def scan_sources(store: Store | None, paths: Sequence[str], options: TilingOptions,
                 retile: bool, allow_outside: bool = False, roots: Sequence[str] = ()) -> Scan:
    """Sort the sources under ``paths`` against the store (None: a new index). Reads only;
    ``retile`` (the tiling options changed; ``paths`` then name every root) makes every stored
    source one to redo. A stored source not listed is dropped only when its file is gone, and
    never while its remembered root (``roots``) is missing as a whole (an unmounted disk)."""
    scan = Scan()
    refs, skipped = list_sources(paths, allow_outside)
    scan.skipped.extend(skipped)
    known = store.sources() if store is not None else {}
    listed = {r.uri for r in refs}
    scan.drop = [uri for uri in known if retile or (uri not in listed
                                                     and _is_gone(uri, paths, skipped, roots))]
    roots = list(real_roots(paths))
    for ref in refs:
        row = known.get(ref.uri)
        try:
            status, done = _status(row, ref, retile, store, scan)
            if status == "unchanged":
                scan.unchanged += 1
                continue
            extra = _check(ref, roots, allow_outside, scan)
            if extra is None:
                continue
            scan.todo.append(Todo(ref, status, done, "", extra,
                                  _windows(ref, options, done, row)))
        except CachError as err:
            scan.skipped.append(Skipped(ref.uri, str(err), err.code))
        except OSError as err:
            scan.skipped.append(Skipped(ref.uri, f"{ref.uri}: {err.strerror or err}",
                                        "data_unreadable"))
    # a stored source that is now refused or unreadable no longer describes a file we may read
    scan.drop += [s.path for s in scan.skipped if s.path in known and s.path not in scan.drop]
    return scan


def apply_scan(store: Store, scan: Scan) -> None:
    """Record what the scan found: drop gone, refused and re-tiled sources (``scan.removed``
    counts the ones that are not indexed again), and touched files' new identity."""
    if scan.drop:
        redo = {t.source.uri for t in scan.todo}
        scan.removed = len([uri for uri in scan.drop if uri not in redo])
        store.delete_sources(scan.drop)
    for ref in scan.touched:
        store.set_identity(ref.uri, ref.size, str(ref.version), float(getattr(ref, "mtime", 0)))


def _is_gone(uri: str, paths: Sequence[str], skipped: list[Skipped],
             roots: Sequence[str] = ()) -> bool:
    """A stored source is gone when it no longer exists (local files) or when it lies under a
    listed prefix and was not listed (remote). Never judged by a path check for remote URIs."""
    if "://" in uri:
        return any(uri.startswith(str(p).rstrip("/") + "/") for p in paths)
    if any(s.path == uri for s in skipped):
        return False  # unreadable now (e.g. a broken link): reported, and handled below
    if os.path.lexists(uri):
        return False
    root = root_of(uri, roots)
    return root is None or os.path.lexists(root)
