"""The one pipeline: index, search, caption, locate, adapt. The CLI, the worker and (through the
worker) the QGIS Processing algorithms all call a :class:`Pipeline`; each only translates inputs
and outputs.

A thin composition of services that own one resource each: the model pool
(``services/models.py``), open indexes (``services/indexes.py``), the caption bank
(``services/captions.py``), with the pure query function (``services/queries.py``) between them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from model_runtime import __version__
from model_runtime.codes import pack
from model_runtime.errors import CancelledError, ConfigError
from model_runtime.protocol import (
    DEFAULT_BACKBONE,
    DEFAULT_BITS,
    MAX_OFFSET,
    AdaptRequest,
    CaptionRequest,
    CaptionResult,
    Estimate,
    Hit,
    IndexRequest,
    IndexSummary,
    LoadRequest,
    LocateRequest,
    SearchRequest,
    SearchResult,
)
from model_runtime.services.captions import CaptionService
from model_runtime.services.indexes import IndexService
from model_runtime.services.models import LazyModel, ModelPool
from model_runtime.services.queries import QueryParts, query_vector, read_query_image
from model_runtime.settings import current
from model_runtime.speed import SpeedLog

LOG = logging.getLogger(__name__)

Progress = Callable[[dict], None]


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("Cancelled.")


def _check_paths_exist(paths: Sequence[str | os.PathLike]) -> None:
    """A local path that does not exist is a typo, not an empty archive: refuse the run before
    anything (an index folder included) is created. Remote URIs are checked when listed."""
    from model_runtime.errors import DataError
    from model_runtime.raster.refs import is_remote_uri

    missing = [str(p) for p in paths if not is_remote_uri(str(p)) and not os.path.lexists(p)]
    if missing:
        raise DataError(f"{', '.join(missing)}: no such file or folder. Nothing was indexed; "
                        "check the path and run it again.", code="file_not_found",
                        path=missing[0])


def _check_search(req: SearchRequest) -> None:
    """The page asked for, and the rules of saving and running saved searches (the CLI's
    words; the worker has checked the fields' kinds already)."""
    if not 0 <= int(req.offset) <= MAX_OFFSET:
        raise ConfigError(f"offset must be from 0 to {MAX_OFFSET:,}, got {req.offset}")
    if req.saved is not None and (req.typed or req.marked or req.save):
        raise ConfigError("A saved search runs as it was saved: give it without text, tile, "
                          "image, marks or --save.")
    if req.save is not None and not (req.learn and req.marked):
        raise ConfigError("Only a refined search can be saved: mark tiles right or wrong "
                          "(--positive/--negative) first.")


def _echo(req: SearchRequest) -> dict[str, Any]:
    """The query as a result repeats it: the parts given, ``k`` and ``collapse`` always."""
    echo = {"text": req.text, "tile": req.tile, "image": req.image,
            "positive": list(req.positive), "negative": list(req.negative),
            "weights": req.weights, "k": req.k, "offset": req.offset or None,
            "bbox": list(req.bbox) if req.bbox else None,
            "bbox_crs": req.bbox_crs if req.bbox else None, "collapse": req.collapse}
    return {key: v for key, v in echo.items() if v not in (None, [], {})}


def _query_parts(req: SearchRequest, tiles: dict, text_vec, image_vec) -> QueryParts:
    """The query's parts with the tiles' vectors (tanh or projection) looked up in ``tiles``."""
    return QueryParts(text_vec, image_vec, None if req.tile is None else tiles[req.tile],
                      [tiles[t] for t in req.positive], [tiles[t] for t in req.negative])


def _prior(parts: QueryParts, proj_parts: QueryParts | None, weights):
    """The typed part of a refined query, as the learner's prior: an image or tile example in
    the projection when it has one, else the typed parts' tanh vector."""
    from model_runtime.feedback import Prior

    typed = QueryParts(parts.text, parts.image, parts.tile)
    if parts.text is None and proj_parts is not None and (
            proj_parts.image is not None or proj_parts.tile is not None):
        return Prior(proj=query_vector(QueryParts(None, proj_parts.image, proj_parts.tile)))
    if not typed.empty():
        return Prior(tanh=query_vector(typed, weights))
    return Prior()


class Pipeline:
    """Models, indexes and captions for one backbone, device and backend.

    ``bits``/``heads`` fix the model for new indexes; left None, new indexes get
    :data:`DEFAULT_BITS` and an existing index is searched with the heads it was built with.
    """

    def __init__(self, backbone: str | None = None, bits: int | None = None,
                 heads: str | os.PathLike | None = None, device: str | None = None,
                 backend: str | None = None, precision: str | None = None) -> None:
        self.backbone = backbone or DEFAULT_BACKBONE
        self.bits = int(bits) if bits is not None else None
        self.models = ModelPool(self.backbone, device or current().device, backend,
                                precision)
        self.indexes = IndexService(self.backbone, bits, heads)
        self.captions = CaptionService()
        self.speed = SpeedLog(self.backbone)

    # --- model ---------------------------------------------------------------------------------
    @property
    def device_name(self) -> str:
        return self.models.device_name

    def load(self, req: LoadRequest | None = None) -> dict[str, Any]:
        """Load the default model now (the worker does this right after ``ready``). A failed
        load leaves what was loaded before in place."""
        req = req or LoadRequest()
        if req.backbone and req.backbone != self.backbone:
            raise ConfigError(f"This worker runs backbone '{self.backbone}'; start another for "
                              f"'{req.backbone}'.")
        start = time.perf_counter()
        heads = req.heads
        service = (IndexService(self.backbone, req.bits or self.bits, heads) if heads
                   else self.indexes)
        ref = service.default_heads(req.bits)
        model = self.models.get(ref)
        model.warm_up()
        import model_runtime.index  # noqa: F401  (rasterio, faiss, sqlite: imports paid now)

        if heads:
            self.indexes = service  # only once the new heads loaded
        return {**model.info.to_json(), "seconds": round(time.perf_counter() - start, 2)}

    def status(self) -> dict[str, Any]:
        """What is loaded; never waits for a load in progress."""
        return {"version": __version__, "device": self.device_name, "backbone": self.backbone,
                "bits": self.bits or DEFAULT_BITS, "models_loaded": self.models.describe(),
                "indexes_open": self.indexes.open_paths(),
                "load_seconds": None if self.models.load_seconds is None
                else round(self.models.load_seconds, 2)}

    def _model(self, heads, timing: dict[str, float]):
        """The model for ``heads``; a load it causes is timed apart (``timing["load"]``)."""
        if self.models.cached(heads) is None:
            t0 = time.perf_counter()
            model = self.models.get(heads)
            timing["load"] = (time.perf_counter() - t0) * 1000
            return model
        return self.models.get(heads)

    # --- indexing ------------------------------------------------------------------------------
    def index(self, req: IndexRequest, progress: Progress | None = None,
              cancel: threading.Event | None = None, *, readers: int | None = None,
              executor: str = "local", ray_address: str | None = None
              ) -> IndexSummary | Estimate:
        """Index ``req.paths`` into ``req.index`` (incremental, resumable), following the rules
        of docs/indexing.md, "What an index holds": the index's own tiling unless the request's
        tiling fields ask for another (which re-tiles every root, only with ``confirm``: else
        ``ConfirmationNeeded``, code ``confirm_retile``), new folders added as roots, ``remove``
        roots dropped with their tiles. With ``dry_run`` nothing is loaded or written: returns an
        ``Estimate``. Above 100,000 new tiles the run needs ``confirm`` too. ``executor="ray"``
        runs the same work units on a Ray cluster (``index/ray_executor.py``); ``readers``
        sets the local run's reader threads."""
        index_dir, paths = req.index, list(req.paths)
        if req.remove and not req.dry_run:
            removed = self.remove_roots(index_dir, req.remove)
            if not paths:
                return removed
        _check_paths_exist(paths)
        plan = self._plan_index(index_dir, paths, req.tiling(), req.confirm or req.dry_run,
                                req.rebuild)
        opts = self._build_options(plan, req, readers)
        heads = self.indexes.heads_for_build(index_dir, req.bits, req.rebuild)
        if req.dry_run:
            return self._dry_run(index_dir, plan, opts, heads)
        check_cancel(cancel)
        summary = self._build(index_dir, plan.paths, heads, opts, progress, cancel, executor,
                              ray_address)
        summary = replace(summary, roots_added=tuple(plan.roots_added),
                          roots=summary.roots or tuple(plan.roots_held + plan.roots_added))
        if req.remove:
            summary = replace(summary, removed=summary.removed + removed.removed,
                              roots_removed=removed.roots_removed)
        return summary

    @staticmethod
    def _build_options(plan, req: IndexRequest, readers: int | None):
        from model_runtime.index.build import BuildOptions

        return BuildOptions(tiling=plan.tiling, rebuild=req.rebuild, confirm=req.confirm,
                            allow_outside_sources=req.allow_outside_sources,
                            **({"readers": readers} if readers else {}))

    def _build(self, index_dir, paths, heads, opts, progress, cancel, executor,
               ray_address) -> IndexSummary:
        from model_runtime.index.build import build_index

        self.indexes.forget(index_dir)
        if executor == "ray":
            from model_runtime.index.ray_executor import build_index_ray

            return build_index_ray(index_dir, [str(p) for p in paths], heads, opts,
                                   backbone=self.backbone, device=self.models.device,
                                   backend=self.models.backend, address=ray_address,
                                   progress=progress, cancel=cancel)
        if executor != "local":
            raise ConfigError(f"Unknown executor '{executor}': use local or ray.")
        self.indexes.keep_heads(index_dir, heads)
        loaded = self.models.cached(heads) is not None
        # loads on the first tile to encode, as its own progress step
        model = LazyModel(self.models, heads, progress)
        summary = build_index(index_dir, [str(p) for p in paths], model, opts, progress, cancel,
                              self.speed.images_per_s(self.device_name))
        if summary.encoded:
            load_s = 0.0 if loaded else float(self.models.load_seconds or 0.0)
            self.speed.record_run(model.device, summary.encoded, summary.seconds, load_s,
                                  files=summary.added + summary.updated)
        return summary

    @staticmethod
    def _plan_index(index_dir, paths, options, confirm: bool, rebuild: bool):
        """The run's tiling, folders and roots from what the index holds (read only)."""
        from model_runtime.index.roots import holdings, plan_run, requested_fields
        from model_runtime.index.store import DB_NAME, Store

        stored, roots, held = None, [], []
        if Path(index_dir, DB_NAME).is_file():
            store = Store(index_dir)
            try:
                stored, roots = store.meta().get("tiling"), store.roots()
                held = holdings(roots, store.sources().values())
            finally:
                store.close()
        return plan_run(stored, roots, held, [str(p) for p in paths],
                        requested_fields(options), confirm, rebuild)

    def remove_roots(self, index_dir: str | os.PathLike, remove: Sequence[str]) -> IndexSummary:
        """Forget root folders of an index and drop their tiles (``cach index --remove``)."""
        from model_runtime.index.lock import IndexLock
        from model_runtime.index.roots import check_removable
        from model_runtime.index.store import Store
        from model_runtime.index.writer import finalize

        started = time.perf_counter()
        self.indexes.forget(index_dir)
        with IndexLock(index_dir):
            store = Store(index_dir)
            try:
                wanted = check_removable(remove, store.roots())
                meta = store.meta()  # before the removal marks the index incomplete
                removed = sum(store.remove_root(root) for root in wanted)
                bits = int((meta.get("model") or {}).get("bits") or 0)
                pending = int((meta.get("partial") or {}).get("pending_files") or 0)
                tiles = finalize(store, bits, pending) if bits else store.count_tiles()
                if bits and not meta.get("complete", False):
                    store.set_meta(complete=False)  # an interrupted run stays one to resume
                return IndexSummary(removed=removed, tiles=tiles, roots_removed=tuple(wanted),
                                    roots=tuple(store.roots()),
                                    seconds=time.perf_counter() - started)
            finally:
                store.close()

    def _dry_run(self, index_dir, plan, opts, heads) -> Estimate:
        from model_runtime.index.build import estimate
        from model_runtime.index.scan import scan_sources
        from model_runtime.index.store import DB_NAME, Store

        exists = Path(index_dir, DB_NAME).is_file() and not opts.rebuild
        store = Store(index_dir) if exists else None
        try:
            scan = scan_sources(store, plan.paths, opts.tiling, opts.rebuild or plan.retile,
                                opts.allow_outside_sources, plan.roots_held)
        finally:
            if store is not None:
                store.close()
        est = estimate(scan, heads.bits, heads.proj_dim, self.speed.images_per_s(self.device_name))
        est = self._with_setup(est, heads)
        return replace(est, roots_held=tuple(h.to_json() for h in plan.held),
                       roots_added=tuple(plan.roots_added), retile_tiles=plan.retile_tiles,
                       tiling=plan.tiling.to_json())

    def _with_setup(self, est: Estimate, heads) -> Estimate:
        """A run with tiles to encode also takes the run's overhead and, while this worker has
        not loaded the model, its load (graphs built the first time): its own step."""
        if not est.new_tiles:
            return est
        from model_runtime.speed import RUN_OVERHEAD_S

        setup = 0.0 if self.models.cached(heads) is not None else \
            self.speed.load_seconds(self.device_name)
        work = self.speed.work_seconds(self.device_name, est.files, est.new_tiles)
        return replace(est, seconds=work + RUN_OVERHEAD_S + setup, setup_seconds=round(setup, 1))

    # --- search --------------------------------------------------------------------------------
    def search(self, req: SearchRequest, cancel: threading.Event | None = None) -> SearchResult:
        """Top-k tiles for text, an image file, a tile id and/or example tiles (combined).

        Query and example tiles are left out of the results. Scores are in [0, 1]; text
        queries also get a calibrated ``weak_match`` and per-hit ``confidence``. Tiles marked
        ``positive``/``negative`` are learnt from (``feedback.py``; ``learn=False``: the
        weighted sum of vectors); ``save`` keeps the refined search as a file, ``saved`` runs
        such a file on this index (``saved_search.py``)."""
        from model_runtime.index.query import Query, rerank_scale

        start = time.perf_counter()
        timing: dict[str, float] = {}
        index, heads = self.indexes.open(req.index)
        timing["open"] = (time.perf_counter() - start) * 1000
        _check_search(req)
        if req.saved is not None:
            return self._search_saved(index, heads, req, start, timing)
        model = self._model(heads, timing) if (req.text or req.image) else None
        parts, proj_parts = self._parts(index, model, req, timing)
        check_cancel(cancel)
        tanh = query_vector(parts, req.weights)
        if req.learn and req.marked:
            return self._search_refined(index, heads, req, parts, proj_parts, tanh, start,
                                        timing)
        proj = centre = None
        if req.text is None and proj_parts is not None:
            centre = index.proj_centre()
            proj = query_vector(proj_parts.shifted(centre), req.weights)
        t0 = time.perf_counter()
        scale = rerank_scale(str(heads.path)) if proj is not None else None
        hits = index.search(Query(pack(tanh), tanh, proj, scale, centre), k=req.k + req.offset,
                            bbox=req.bbox, bbox_crs=req.bbox_crs, collapse=req.collapse,
                            exclude_ids=req.excluded, page=req.k,
                            near_ids=[req.tile] if req.tile is not None else [])
        timing["search"] = (time.perf_counter() - t0) * 1000
        weak, hits = self._assess(index, model, req.text, tanh, hits, timing)
        timing["total"] = (time.perf_counter() - start) * 1000 - timing.get("load", 0.0)
        return SearchResult(results=hits[req.offset:], query=_echo(req),
                            model=heads.info().to_json(),
                            index=self._index_info(index, heads), timing_ms=timing,
                            weak_match=weak)

    def _search_refined(self, index, heads, req: SearchRequest, parts, proj_parts, tanh, start,
                        timing) -> SearchResult:
        """Marks given: fit the learner on them (the typed query as prior), score every tile."""
        from model_runtime.codes import pack as pack_code
        from model_runtime.services import refine

        t0 = time.perf_counter()
        refiner = refine.fit_marks(index, _prior(parts, proj_parts, req.weights),
                                   list(req.positive), list(req.negative),
                                   portable=req.save is not None)
        timing["fit"] = (time.perf_counter() - t0) * 1000
        echo = _echo(req)
        if req.save is not None:
            from model_runtime import saved_search

            path = saved_search.save(req.save, refine.saved_of(refiner, heads, index, echo))
            echo["saved_to"] = str(path)
        t0 = time.perf_counter()
        hits = refine.scored_hits(index, refiner.full, req.k + req.offset, req.bbox,
                                  req.bbox_crs, req.collapse, req.excluded,
                                  pack_code(tanh), page=req.k)[req.offset:]
        timing["search"] = (time.perf_counter() - t0) * 1000
        timing["total"] = (time.perf_counter() - start) * 1000 - timing.get("load", 0.0)
        echo["learner"] = refine.METHOD
        return SearchResult(results=hits, query=echo, model=heads.info().to_json(),
                            index=self._index_info(index, heads), timing_ms=timing,
                            weak_match=None)

    def _search_saved(self, index, heads, req: SearchRequest, start, timing) -> SearchResult:
        """Run a saved refined search on this index (the scorer its model allows)."""
        from model_runtime import saved_search
        from model_runtime.services import refine

        doc = saved_search.load(req.saved)
        blocks = index.feature_blocks()
        proj_dim = 0 if blocks.proj is None else int(blocks.proj.shape[1])
        which, scorer = doc.scorer_for(heads.backbone, int(heads.bits), heads.sha,
                                       refine.proj_sha(heads), proj_dim)
        t0 = time.perf_counter()
        code = None if scorer.w_tanh is None else pack(scorer.w_tanh)  # the model's direction
        hits = refine.scored_hits(index, scorer, req.k + req.offset, req.bbox, req.bbox_crs,
                                  req.collapse, (), code, page=req.k)[req.offset:]
        timing["search"] = (time.perf_counter() - t0) * 1000
        timing["total"] = (time.perf_counter() - start) * 1000
        echo = {"saved": str(req.saved), "scorer": which, "k": req.k,
                **({"offset": req.offset} if req.offset else {}), "collapse": req.collapse,
                "learner": refine.METHOD,
                **{key: doc.query[key] for key in ("text", "image", "tile") if key in doc.query},
                **({"bbox": list(req.bbox), "bbox_crs": req.bbox_crs} if req.bbox else {})}
        return SearchResult(results=hits, query=echo, model=heads.info().to_json(),
                            index=self._index_info(index, heads), timing_ms=timing,
                            weak_match=None)

    def _index_info(self, index, heads) -> dict[str, Any]:
        return {"path": str(index.path), "bits": index.bits, "tiles": index.tiles,
                "pending_files": index.pending_files, "roots": index.store.roots(),
                "outdated_model": self.indexes.is_outdated(heads, Path(index.path))}

    def _parts(self, index, model, req: SearchRequest, timing):
        """The query's parts as tanh vectors, and as projections when every part has one."""
        t0 = time.perf_counter()
        text_vec = image_vec = image_proj = None
        if req.text:
            text_vec = model.encode_texts([req.text])[0]
            timing["encode_text"] = (time.perf_counter() - t0) * 1000
        if req.image:
            t0 = time.perf_counter()
            out = model.encode_images([read_query_image(req.image)])
            image_vec, image_proj = out.tanh[0], None if out.proj is None else out.proj[0]
            timing["encode_image"] = (time.perf_counter() - t0) * 1000
        ids = req.excluded
        vec = {t: index.tile_vector(t) for t in ids}
        prj = {t: index.tile_proj(t) for t in ids}
        parts = _query_parts(req, vec, text_vec, image_vec)
        have_proj = all(p is not None for p in prj.values()) and (image_proj is not None
                                                                   or not req.image)
        proj_parts = None
        if have_proj and (req.image or ids):
            proj_parts = _query_parts(req, prj, None, image_proj)
        return parts, proj_parts

    def _assess(self, index, model, text, tanh, hits: list[Hit], timing):
        """``weak_match`` and per-hit confidence for text queries (None for other queries)."""
        if not text or not hits:
            return None, hits
        from model_runtime.services.matching import assess_hits

        t0 = time.perf_counter()
        weak, hits = assess_hits(index, model, text, tanh, hits)
        timing["assess"] = (time.perf_counter() - t0) * 1000
        return weak, hits

    def locate(self, req: LocateRequest) -> Hit | None:
        """The indexed tile under a map point (a ``Hit`` or None)."""
        index, _ = self.indexes.open(req.index)
        return index.locate(float(req.x), float(req.y), req.crs)

    # --- captions ------------------------------------------------------------------------------
    def caption(self, req: CaptionRequest, progress: Progress | None = None,
                cancel: threading.Event | None = None) -> CaptionResult:
        """Bank captions nearest to a tile's or an image's code; with an index, also the
        ``similar`` nearest other tiles."""
        from model_runtime.index.query import Query, rerank_scale

        start = time.perf_counter()
        timing: dict[str, float] = {}
        index, tile, image = None, req.tile, req.image
        if req.index is not None:
            index, heads = self.indexes.open(req.index)
        elif tile is not None:
            raise ConfigError("Captioning a tile needs its index.")
        else:
            heads = self.indexes.default_heads()
        model = self._model(heads, timing)
        if tile is not None:
            vector, proj = index.tile_vector(int(tile)), index.tile_proj(int(tile))
        elif image is not None:
            out = model.encode_images([read_query_image(image)])
            vector, proj = out.tanh[0], None if out.proj is None else out.proj[0]
        else:
            raise ConfigError("Caption needs a tile id or an image file.")
        timing["encode"] = (time.perf_counter() - start) * 1000 - timing.get("load", 0.0)
        check_cancel(cancel)
        t0 = time.perf_counter()
        captions = self.captions.describe(model, pack(vector)[0], req.k, progress)
        timing["captions"] = (time.perf_counter() - t0) * 1000
        hits = []
        if index is not None and req.similar > 0:
            exclude = [int(tile)] if tile is not None else []
            scale = centre = None
            if proj is not None:
                scale, centre = rerank_scale(str(heads.path)), index.proj_centre()
                proj = proj if centre is None else proj - centre
            hits = index.search(Query(pack(vector), vector, proj, scale, centre), k=req.similar,
                                exclude_ids=exclude,
                                near_ids=exclude)  # other places than the clicked one
        timing["total"] = (time.perf_counter() - start) * 1000 - timing.get("load", 0.0)
        info = {} if index is None else self._index_info(index, heads)
        return CaptionResult(captions, hits, heads.info().to_json(), info, timing)

    # --- adaptation ----------------------------------------------------------------------------
    def adapt(self, req: AdaptRequest, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> dict[str, Any]:
        """Fine-tune the image head to this index's own tiles (no labels) and re-hash the index
        without the encoder; the new heads are stored in the index."""
        from model_runtime.index.adapt import adapt_index

        index_dir = req.index
        index, heads = self.indexes.open(index_dir)
        self.indexes.forget(index_dir)
        result = adapt_index(Path(index_dir), heads, req.steps, progress, cancel)
        result["graph_seconds"] = self._build_adapted_model(index_dir, progress)
        result["seconds"] = round(result["seconds"] + result["graph_seconds"], 2)
        return result

    def _build_adapted_model(self, index_dir: str | os.PathLike,
                             progress: Progress | None) -> float:
        """Build (and warm) the model of the adapted heads now, inside Adapt: otherwise the
        first search after Adapt pays this one-off graph build. Returns its seconds."""
        message = "building the search model for the adapted heads"
        if progress is not None:
            progress({"stage": "graphs", "done": 0, "total": 1, "message": message})
        start = time.perf_counter()
        _, heads = self.indexes.open(index_dir)
        self.models.get(heads).warm_up()
        if progress is not None:
            progress({"stage": "graphs", "done": 1, "total": 1, "message": message})
        return round(time.perf_counter() - start, 2)

    def close(self) -> None:
        """Close open indexes (models stay loaded)."""
        self.indexes.close()


#: another name of :class:`Pipeline` (used by the caption and search commands and
#: bench/bench_e2e.py)
Runtime = Pipeline
