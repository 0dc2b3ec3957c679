"""What an index holds: its root folders (or object-storage prefixes) and its one tiling.

docs/indexing.md, "What an index holds", is the rule this module implements, once, for the
CLI, the worker and the plugin:

- a run over a new folder adds it as a root (the summary says so);
- a run uses the index's stored tiling; asking for another tiling re-tiles every remembered
  root, and only after a confirmation that names how many tiles and folders (else the run is
  refused with the flag to use);
- a source is removed only when its file is gone from a remembered root, or when its root is
  removed (``cach index --remove ROOT``). Nothing is removed because it was not named.

Pure functions over paths and dicts, plus :func:`plan_run`, which reads (never writes) the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from model_runtime.errors import ConfigError, ConfirmationNeeded
from model_runtime.raster.refs import is_remote_uri
from model_runtime.raster.tiling import TilingOptions

#: the tiling fields a user can ask for (CLI flags, protocol params, the plugin's dialog)
TILING_FIELDS = ("tile_size", "tile_metres", "overlap", "scales", "bands")


def normalize_root(path: str | os.PathLike) -> str:
    """A path as the index remembers it: absolute for local paths, without a trailing slash
    for object-storage prefixes."""
    text = os.fspath(path)
    if is_remote_uri(text):
        return text.rstrip("/") if text.rstrip("/") else text
    return os.path.abspath(os.path.expanduser(text))


def _forms(root: str) -> tuple[str, ...]:
    """The spellings a source under ``root`` may have: sources are stored by their real path."""
    if is_remote_uri(root):
        return (root,)
    return tuple(dict.fromkeys((root, os.path.realpath(root))))


def is_under(uri: str, root: str) -> bool:
    """True when the source ``uri`` is ``root`` itself or lies below it."""
    for form in _forms(root):
        sep = "/" if is_remote_uri(form) else os.sep
        if uri == form or uri.startswith(form.rstrip(sep) + sep):
            return True
    return False


def root_of(uri: str, roots: Sequence[str]) -> str | None:
    """The remembered root holding ``uri`` (the deepest one), or None."""
    found = [r for r in roots if is_under(uri, r)]
    return max(found, key=len) if found else None


def derive_roots(uris: Iterable[str], known: Sequence[str] = ()) -> list[str]:
    """Roots for an index written before roots were stored: ``known`` (the older ``meta.roots``)
    plus, for each source under none of them, its folder; folders inside another are merged."""
    roots = [normalize_root(r) for r in known]
    extra = sorted({_parent(u) for u in uris if root_of(u, roots) is None})
    for folder in extra:  # shortest first, so a folder inside another one is dropped
        if not any(is_under(folder, r) for r in roots):
            roots.append(folder)
    return list(dict.fromkeys(roots))


def _parent(uri: str) -> str:
    if is_remote_uri(uri):
        return uri.rsplit("/", 1)[0]
    return os.path.dirname(uri)


# --- tiling ---------------------------------------------------------------------------------------
def requested_fields(options: Any) -> dict:
    """The tiling fields a user asked for: a dict's non-None entries (CLI flags, protocol
    params), or every field of a ``TilingOptions``."""
    if options is None:
        return {}
    if isinstance(options, TilingOptions):
        return {k: v for k, v in options.to_json().items() if k in TILING_FIELDS}
    return {k: v for k, v in dict(options).items() if v is not None}


def resolve_tiling(stored: dict | None, requested: dict) -> TilingOptions:
    """The tiling of a run: the index's stored tiling with the fields the user asked for laid
    over it (defaults for a new index). ``tile_size`` and ``tile_metres`` replace each other."""
    base = dict(stored or {})
    if "tile_size" in requested and "tile_metres" not in requested:
        base["tile_metres"] = None
    data = {**base, **requested}
    for key in ("scales", "bands"):
        if isinstance(data.get(key), str):
            data[key] = [int(v) for v in str(data[key]).replace(" ", "").split(",") if v]
    return TilingOptions.from_json(data)


def same_tiling(a: dict | None, b: dict | None) -> bool:
    """The same tiling, as stored (JSON: tuples and lists alike; a field an older index did not
    store takes its default)."""
    def full(value: dict | None) -> Any:
        try:
            value = TilingOptions.from_json(dict(value or {})).to_json()
        except (ConfigError, TypeError, ValueError):
            pass
        return json.loads(json.dumps(value))

    return full(a) == full(b)


# --- what an index holds ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RootHolding:
    """One remembered root: how many files and tiles of it the index holds."""

    path: str
    files: int = 0
    tiles: int = 0

    def to_json(self) -> dict:
        return {"path": self.path, "files": self.files, "tiles": self.tiles}


def holdings(roots: Sequence[str], sources: Iterable[Any]) -> list[RootHolding]:
    """Files and tiles per root from the store's source rows (``.path``, ``.tiles``)."""
    files = {r: 0 for r in roots}
    tiles = {r: 0 for r in roots}
    for row in sources:
        root = root_of(row.path, roots)
        if root is not None:
            files[root] += 1
            tiles[root] += int(row.tiles)
    return [RootHolding(r, files[r], tiles[r]) for r in roots]


@dataclass
class RunPlan:
    """What a run over ``paths`` does to the index's roots and tiling (decided before the run
    takes the lock; the builder checks the tiling again under it)."""

    tiling: TilingOptions
    paths: list[str]
    roots_added: list[str] = field(default_factory=list)
    roots_held: list[str] = field(default_factory=list)
    retile: bool = False
    retile_tiles: int = 0
    #: what the index held before the run, per root
    held: list[RootHolding] = field(default_factory=list)


def plan_run(stored_tiling: dict | None, roots: Sequence[str], held: Sequence[RootHolding],
             paths: Sequence[str], requested: dict, confirm: bool, rebuild: bool) -> RunPlan:
    """Decide the run's tiling, the folders to scan and the roots it adds.

    Another tiling than the stored one re-tiles every remembered root: without ``confirm``
    that raises :class:`ConfirmationNeeded` (code ``confirm_retile``) naming the tiles and
    folders, and nothing is written. ``rebuild`` starts over from every remembered root."""
    named = [normalize_root(p) for p in paths]
    tiling = resolve_tiling(stored_tiling, requested)
    tiles = sum(h.tiles for h in held)
    retile = bool(roots) and stored_tiling is not None and not same_tiling(
        stored_tiling, tiling.to_json())
    plan = RunPlan(tiling, list(paths), [r for r in dict.fromkeys(named) if r not in roots],
                   list(roots), retile and not rebuild, tiles if retile else 0, list(held))
    if (retile or rebuild) and roots:
        plan.paths = list(dict.fromkeys([*roots, *paths]))
    if plan.retile and not confirm:
        raise ConfirmationNeeded(
            f"The index is tiled with {describe_tiling(stored_tiling)}; asking for "
            f"{describe_change(stored_tiling, tiling.to_json())} would re-tile all {tiles:,} "
            f"tiles of its {len(roots)} folder(s) "
            f"({', '.join(roots)}). Confirm to re-tile them all (cach index --yes), or leave the "
            "tiling options out to use the index's own.",
            code="confirm_retile", retile_tiles=tiles, roots=list(roots),
            tiling=stored_tiling, requested=requested,
        )
    return plan


def describe_tiling(tiling: dict | None) -> str:
    """E.g. ``tile_size 96, overlap 0.5`` (the fields a user sets, as stored or asked)."""
    if not tiling:
        return "the default tiling"
    parts = [f"{k} {_shown(tiling[k])}" for k in TILING_FIELDS if tiling.get(k) is not None]
    return ", ".join(parts) or "the default tiling"


def describe_change(old: dict | None, new: dict) -> str:
    """E.g. ``tile_size 256 (not 128)``: the user-set fields that differ."""
    old = dict(old or {})
    parts = [f"{k} {_shown(new.get(k))} (not {_shown(old.get(k))})" for k in TILING_FIELDS
             if not same_tiling({k: old.get(k)}, {k: new.get(k)})]
    return ", ".join(parts) or "another tiling"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def check_removable(remove: Sequence[str], roots: Sequence[str]) -> list[str]:
    """The roots named by ``--remove`` as the index remembers them; unknown ones are refused."""
    wanted = [normalize_root(r) for r in remove]
    unknown = [r for r in wanted if r not in roots]
    if unknown:
        held = ", ".join(roots) or "none"
        raise ConfigError(f"{', '.join(unknown)} is not a folder of this index (its folders: "
                          f"{held}). Nothing was removed.", code="bad_value")
    return wanted
