"""Processing algorithms: read parameters, hand off to the shared runtime client, write outputs."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ...model_runtime.protocol import (
    CONFIRM_ABOVE_TILES,
    DEFAULT_K,
    NOT_GEOREFERENCED_NOTE,
    Estimate,
    IndexRequest,
    IndexSummary,
    OpRequest,
    Progress,
    SearchRequest,
    SearchResult,
)
from .. import guide, wording
from ..extent import rect_bbox
from ..layers import FOOTPRINT_CRS, hit_feature, hit_fields
from ..runtime_client import WorkerError, shared_client
from ..wording import tr


def _call(call: OpRequest, feedback: QgsProcessingFeedback) -> dict[str, Any]:
    """One typed worker request with progress and cancel wired to the feedback object."""

    def progress(event: Progress) -> None:
        if event.percent is not None:
            feedback.setProgress(event.percent)
        if event.message:
            feedback.setProgressText(f"{event.stage} {event.message}".strip())

    try:
        return shared_client().call(call, progress=progress, is_cancelled=feedback.isCanceled)
    except WorkerError as err:
        if err.cancelled:
            feedback.reportError("Cancelled.")
            return {}
        raise QgsProcessingException(_error_text(err)) from err


def _error_text(err: WorkerError) -> str:
    if err.code == "confirm_large_run":
        estimate = Estimate.from_json(err.details.get("estimate") or {})
        return (
            f"This run would index {wording.estimate_text(estimate)}. Tick "
            f"“Index even a very large run” to go ahead."
        )
    return f"{wording.error_text(err.info)} ({wording.error_details(err.info)})"


class _Base(QgsProcessingAlgorithm):
    #: the user guide's section on this algorithm (``guide``: bundled, offline)
    HELP = guide.SEARCH

    def group(self) -> str:
        return tr("Raster search")

    def helpUrl(self) -> str:  # noqa: N802 - QGIS API
        return guide.guide_url(self.HELP).toString()

    def groupId(self) -> str:  # noqa: N802 - QGIS API
        return "search"

    def createInstance(self) -> QgsProcessingAlgorithm:  # noqa: N802 - QGIS API
        return type(self)()


class IndexRasterFolder(_Base):
    """Index a folder of rasters into a CACH index (``index`` op)."""

    INPUT, INDEX, TILE_SIZE, OVERLAP, BANDS, MULTI_SCALE, REBUILD, DRY_RUN, CONFIRM = (
        "INPUT",
        "INDEX",
        "TILE_SIZE",
        "OVERLAP",
        "BANDS",
        "MULTI_SCALE",
        "REBUILD",
        "DRY_RUN",
        "CONFIRM",
    )

    def name(self) -> str:
        return "indexrasterfolder"

    HELP = guide.INDEX

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return tr("Index raster folder")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return tr(
            "Cuts every raster of a folder into tiles, hashes them with the CACH model and stores "
            "them in an index folder. Re-running updates only changed files. Dry run only "
            "estimates files, tiles, bytes and time.",
        )

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(
                self.INPUT,
                tr("Raster folder"),
                behavior=QgsProcessingParameterFile.Behavior.Folder,
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.INDEX, tr("Index folder")))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                tr("Tile size (pixels; empty = the index's own, 256 for a new index)"),
                QgsProcessingParameterNumber.Type.Integer,
                None,
                optional=True,
                minValue=32,
                maxValue=8192,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OVERLAP,
                tr("Overlap (fraction of a tile; empty = the index's own, 0 for a new index)"),
                QgsProcessingParameterNumber.Type.Double,
                None,
                optional=True,
                minValue=0.0,
                maxValue=0.9,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.BANDS,
                tr("Bands (e.g. 1,2,3; empty = automatic)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.MULTI_SCALE, tr("Also tiles twice as large"), False)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.REBUILD, tr("Rebuild the index from scratch"), False)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.DRY_RUN, tr("Dry run (estimate)"), False)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.CONFIRM,
                tr(
                    "Index even a very large run (over {CONFIRM_ABOVE_TILES:,} new tiles), "
                    "or one whose tiling re-tiles every folder of an existing index",
                ).format(CONFIRM_ABOVE_TILES=CONFIRM_ABOVE_TILES),
                False,
            )
        )
        self.addOutput(QgsProcessingOutputNumber("TILES", "Tiles"))
        self.addOutput(QgsProcessingOutputString("SUMMARY", "Summary"))

    def processAlgorithm(  # noqa: N802 - QGIS API
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        call = self._request(parameters, context)
        result = _call(call, feedback)
        text = _report_index(result, call.dry_run, feedback) if result else "cancelled"
        return {
            self.INDEX: call.index,
            "TILES": int(result.get("tiles") or 0),
            "SUMMARY": text,
        }

    def _request(self, parameters: dict, context: QgsProcessingContext) -> IndexRequest:
        """The ``index`` request of the parameters. Tiling only when given: else the index's
        own (nothing is re-tiled), or the defaults for a new index."""
        from ..dialogs import parse_bands

        try:
            bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context) or "")
        except ValueError as err:
            raise QgsProcessingException(str(err)) from err
        tile_size = overlap = None
        if _given(parameters, self.TILE_SIZE):
            tile_size = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        if _given(parameters, self.OVERLAP):
            overlap = self.parameterAsDouble(parameters, self.OVERLAP, context)
        multi_scale = self.parameterAsBool(parameters, self.MULTI_SCALE, context)
        return IndexRequest(
            self.parameterAsString(parameters, self.INDEX, context),
            paths=(self.parameterAsFile(parameters, self.INPUT, context),),
            tile_size=tile_size,
            overlap=overlap,
            bands=tuple(bands) if bands else None,
            scales=(1, 2) if multi_scale else None,
            dry_run=self.parameterAsBool(parameters, self.DRY_RUN, context),
            rebuild=self.parameterAsBool(parameters, self.REBUILD, context),
            confirm=self.parameterAsBool(parameters, self.CONFIRM, context),
        )


def _given(parameters: dict, name: str) -> bool:
    """An optional parameter the user set (absent, None, NULL and "" are not set)."""
    value = parameters.get(name)
    if isinstance(value, QVariant):
        return not value.isNull()
    return value is not None and value != ""


def _report_index(result: dict[str, Any], dry_run: bool, feedback: QgsProcessingFeedback) -> str:
    """Push the run's summary (a warning when nothing was indexed) and each skipped file."""
    if dry_run:
        estimate = Estimate.from_json(result)
        text, skipped = wording.estimate_text(estimate), estimate.skipped
        feedback.pushInfo(text)
    else:
        summary = IndexSummary.from_json(result)
        (text, level), skipped = wording.summary_text(summary), summary.skipped
        (feedback.pushWarning if level == wording.WARNING else feedback.pushInfo)(text)
    for item in skipped:
        feedback.pushWarning(f"skipped {item.path}: {item.reason}")
    return text


class TextSearch(_Base):
    """Search an index by text; outputs the footprints of the best tiles (``search`` op)."""

    INDEX, TEXT, K, EXTENT, OUTPUT = "INDEX", "TEXT", "K", "EXTENT", "OUTPUT"

    def name(self) -> str:
        return "textsearch"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return tr("Text search")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return tr(
            "Finds the tiles of a CACH index that best match a description, e.g. 'a baseball "
            "field next to a parking lot'. Output: footprints with rank, score, source, window, "
            "query, model and index.",
        )

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(
                self.INDEX,
                tr("Index folder"),
                behavior=QgsProcessingParameterFile.Behavior.Folder,
            )
        )
        self.addParameter(QgsProcessingParameterString(self.TEXT, tr("What are you looking for")))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.K,
                tr("Number of results"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_K,
                minValue=1,
                maxValue=10000,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, tr("Only within extent"), optional=True)
        )
        self.addParameter(_results_sink(self.OUTPUT))

    def processAlgorithm(  # noqa: N802 - QGIS API
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        index = self.parameterAsFile(parameters, self.INDEX, context)
        text = self.parameterAsString(parameters, self.TEXT, context).strip()
        if not text:
            raise QgsProcessingException("Type what you are looking for.")
        area: dict[str, Any] = {}
        if parameters.get(self.EXTENT):
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
            if not rect.isEmpty():
                bbox, area["bbox_crs"] = rect_bbox(rect, crs)
                area["bbox"] = tuple(bbox)
        k = self.parameterAsInt(parameters, self.K, context)
        call = SearchRequest(index, text=text, k=k, **area)
        result = SearchResult.from_json(_call(call, feedback))
        dest = _write_hits(self, parameters, context, feedback, result, text, index)
        _report_search(result, text, feedback)
        return {self.OUTPUT: dest}


def _results_sink(name: str) -> QgsProcessingParameterFeatureSink:
    """The footprint layer a search algorithm writes its hits to."""
    return QgsProcessingParameterFeatureSink(
        name, tr("Search results"), QgsProcessing.SourceType.TypeVectorPolygon
    )


def _write_hits(alg: QgsProcessingAlgorithm, parameters: dict, context: QgsProcessingContext,
               feedback: QgsProcessingFeedback, result: SearchResult, label: str,
               index: str) -> str:
    """The search's hits as footprint features in the algorithm's OUTPUT sink; its id."""
    fields = hit_fields()
    sink, dest = alg.parameterAsSink(
        parameters,
        alg.OUTPUT,
        context,
        fields,
        QgsWkbTypes.Type.Polygon,
        QgsCoordinateReferenceSystem(FOOTPRINT_CRS),
    )
    model = wording.model_provenance(result.model)
    index_path = str(result.index.get("path") or index)
    for hit in result.results:
        if feedback.isCanceled():
            break
        sink.addFeature(
            hit_feature(hit, fields, label, model, index_path), QgsFeatureSink.Flag.FastInsert
        )
    return dest


def _report_search(result: SearchResult, text: str, feedback: QgsProcessingFeedback) -> None:
    """How many tiles; which rows have no geometry and why; a weak-match warning."""
    feedback.pushInfo(f"{len(result.results)} tiles found")
    off_map = [h.rank for h in result.results if not h.georeferenced]
    if off_map:
        ranks = ", ".join(f"#{r}" for r in off_map)
        feedback.pushWarning(
            f"{len(off_map)} results have no geometry ({ranks}): {NOT_GEOREFERENCED_NOTE}."
        )
    if result.weak_match and result.results:
        feedback.pushWarning(wording.weak_match_text(text))


class RunSavedSearch(_Base):
    """Run a refined search saved with ``cach search --save`` (or the dock) on an index: "find
    more of these" on imagery indexed later (``search`` op with ``saved``)."""

    INDEX, SAVED, K, OUTPUT = "INDEX", "SAVED", "K", "OUTPUT"

    def name(self) -> str:
        return "runsavedsearch"

    def displayName(self) -> str:  # noqa: N802 - QGIS API
        return tr("Run a saved search")

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS API
        return tr(
            "Runs a refined search kept as a file (tiles marked right or wrong, saved with "
            "'cach search --save') on an index, e.g. next month's imagery. It works on an index "
            "made with the same model, also after 'cach adapt'; another model is refused. "
            "Output: footprints with rank, score, confidence, source and window.",
        )

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(
            QgsProcessingParameterFile(
                self.INDEX,
                tr("Index folder"),
                behavior=QgsProcessingParameterFile.Behavior.Folder,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(self.SAVED, tr("Saved search (.json)"), extension="json")
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.K,
                tr("Number of results"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_K,
                minValue=1,
                maxValue=10000,
            )
        )
        self.addParameter(_results_sink(self.OUTPUT))

    def processAlgorithm(  # noqa: N802 - QGIS API
        self, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        index = self.parameterAsFile(parameters, self.INDEX, context)
        saved = self.parameterAsFile(parameters, self.SAVED, context)
        k = self.parameterAsInt(parameters, self.K, context)
        result = SearchResult.from_json(_call(SearchRequest(index, saved=saved, k=k), feedback))
        label = str(result.query.get("text") or f"saved search {saved}")
        dest = _write_hits(self, parameters, context, feedback, result, label, index)
        _report_search(result, label, feedback)
        feedback.pushInfo(f"scored with the saved search's {result.query.get('scorer')} model")
        return {self.OUTPUT: dest}
