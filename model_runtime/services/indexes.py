"""The index service: open indexes (cached), find the heads an index was built with, check the
model, and hand out what a build needs.

An index records its model (backbone, bits, heads SHA-256). Its heads are found by SHA: the
shipped heads, heads adapted to that index (kept inside it), or heads of an earlier release
(``resources/heads/archive``), so an index keeps searching with the model that made its codes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from model_runtime.errors import ConfigError, DataError, IndexStateError, ModelMismatchError
from model_runtime.index.query import Index, open_index
from model_runtime.index.store import DB_NAME, Store
from model_runtime.model.heads import (
    HeadsRef,
    find_heads,
    index_heads_dir,
    read_heads,
    resolve_heads,
    shipped_heads,
)
from model_runtime.paths import HEADS_DIR

LOG = logging.getLogger(__name__)


def _check_own_heads(model: dict, index_dir: Path) -> None:
    """When the heads file the index names is its own (adapted) and is there but unusable, say
    so: damaged or changed adapted heads are not 'heads this installation does not have'."""
    name = str(model.get("heads") or "")
    own = index_heads_dir(index_dir) / name
    if not name or "/" in name or "\\" in name or not own.is_file():
        return
    try:
        sha = read_heads(own).sha
    except DataError as err:
        raise DataError(
            f"The adapted heads {own} kept in the index are damaged ({err}). Run 'cach adapt' "
            "on the index again, or index the folders again with 'Rebuild'.",
            code="heads_unreadable", path=str(own)) from None
    raise DataError(
        f"The adapted heads {own} kept in the index have changed since they made its codes "
        f"(SHA-256 {sha[:12]}..., the index recorded {str(model.get('heads_sha'))[:12]}...). "
        "Run 'cach adapt' on the index again, or index the folders again with 'Rebuild'.",
        code="heads_unreadable", path=str(own))


def _key(index_dir: str | os.PathLike) -> Path:
    return Path(index_dir).expanduser().resolve()


class IndexService:
    """``bits``/``heads``: what the user asked for (None: the index's own, or the defaults)."""

    def __init__(self, backbone: str, bits: int | None = None,
                 heads: str | os.PathLike | None = None) -> None:
        self.backbone = backbone
        self.bits = int(bits) if bits is not None else None
        self.heads_path = Path(heads).expanduser().resolve() if heads else None
        self._open: dict[Path, tuple[Index, HeadsRef]] = {}
        self._lock = threading.RLock()

    # -- heads -------------------------------------------------------------------------------
    def default_heads(self, bits: int | None = None) -> HeadsRef:
        """The heads a new index gets: the explicit file, else the shipped heads of ``bits``."""
        return resolve_heads(self.backbone, bits or self.bits, self.heads_path)

    def heads_of(self, model: dict, index_dir: Path) -> HeadsRef:
        """The heads an index was built with, found by SHA; a clear error when they are not
        available here or differ from an explicit choice."""
        if model.get("backbone") not in (None, self.backbone):
            raise ModelMismatchError(
                f"The index at {index_dir} was made with backbone '{model.get('backbone')}', but "
                f"this runtime uses '{self.backbone}'. Search it with that backbone, or index the "
                "folders again with 'Rebuild'.")
        bits = int(model.get("bits") or 0)
        if self.bits is not None and self.heads_path is None and self.bits != bits:
            raise ModelMismatchError(
                f"The index at {index_dir} holds {bits}-bit codes, but {self.bits} bits were asked "
                f"for: leave the bit length out, or index the folders again with {self.bits} bits "
                "and 'Rebuild'.")
        if self.heads_path is not None:
            ref = self.default_heads(bits)
            if ref.sha != model.get("heads_sha"):
                raise ModelMismatchError(f"The index at {index_dir} was built with other heads "
                                         f"than {ref.path.name}; search it without --heads.")
            return ref
        return self._find(model, bits, index_dir)

    def _find(self, model: dict, bits: int, index_dir: Path) -> HeadsRef:
        sha = model.get("heads_sha")
        try:
            current = shipped_heads(self.backbone, bits)
        except ConfigError:
            current = None
        if current is not None and (sha is None or current.sha == sha):
            return current
        ref = find_heads(str(sha), [index_heads_dir(index_dir)])
        if ref is None:
            _check_own_heads(model, index_dir)
            raise ModelMismatchError(
                f"The index at {index_dir} was built with heads ({model.get('heads') or sha}) "
                "that this installation does not have. Index the folders again with 'Rebuild' "
                "to use the current model.")
        return ref

    def is_outdated(self, heads: HeadsRef, index_dir: Path) -> bool:
        """True when an index's heads are an earlier release's (not current, not its own)."""
        try:
            current = shipped_heads(self.backbone, heads.bits)
        except ConfigError:
            return False
        own = index_heads_dir(index_dir)
        return heads.sha != current.sha and own not in heads.path.parents

    @staticmethod
    def keep_heads(index_dir: str | os.PathLike, heads: HeadsRef) -> None:
        """An index built with heads that do not ship with CACH (the user's own ``--heads``)
        keeps a copy of them, so it opens anywhere without ``--heads``."""
        if HEADS_DIR in heads.path.parents or index_heads_dir(index_dir) in heads.path.parents:
            return
        folder = index_heads_dir(index_dir)
        if find_heads(heads.sha, [folder]) is None:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(heads.path, folder / heads.path.name)

    def heads_for_build(self, index_dir: str | os.PathLike, bits: int | None, rebuild: bool
                        ) -> HeadsRef:
        """An existing index keeps its own heads (incremental runs encode like the first one);
        a new or rebuilt index gets the default heads of ``bits``."""
        model = None if rebuild else existing_model(index_dir)
        if not model:
            return self.default_heads(bits)
        if bits is not None and int(bits) != int(model["bits"]):
            raise ModelMismatchError(
                f"The index at {index_dir} holds {model['bits']}-bit codes; to make it {bits}-bit, "
                "index the folders again with 'Rebuild'.")
        return self.heads_of(model, _key(index_dir))

    # -- open indexes --------------------------------------------------------------------------
    def open(self, index_dir: str | os.PathLike) -> tuple[Index, HeadsRef]:
        """The open index and its heads; reopened when the index changed on disk."""
        path = _key(index_dir)
        with self._lock:
            cached = self._open.get(path)
            if cached is not None and not _changed(cached[0]):
                return cached
            self.forget(path)
            index = open_index(path)
            try:
                heads = self.heads_of(index.model, path)
            except BaseException:
                index.close()
                raise
            self._open[path] = (index, heads)
            return index, heads

    def forget(self, index_dir: str | os.PathLike) -> None:
        with self._lock:
            entry = self._open.pop(_key(index_dir), None)
            if entry is not None:
                entry[0].close()

    def open_paths(self) -> list[str]:
        return [str(p) for p in list(self._open)]

    def close(self) -> None:
        with self._lock:
            for path in list(self._open):
                self.forget(path)


def _changed(index: Index) -> bool:
    try:
        meta = index.store.meta()
    except IndexStateError:
        return True
    return meta.get("generation") != index.generation or not meta.get("complete")


def existing_model(index_dir: str | os.PathLike) -> dict | None:
    """The model an index records, None when there is no index (or nothing in it) yet."""
    if not (Path(index_dir) / DB_NAME).is_file():
        return None
    store = Store(index_dir)
    try:
        return store.meta().get("model") or None
    finally:
        store.close()
