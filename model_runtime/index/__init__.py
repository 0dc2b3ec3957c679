"""The hash index: SQLite store, faiss binary codes, work units, builder, queries, exporters.

Public API (what the pipeline, CLI and worker call)::

    build_index(index_dir, paths, model, BuildOptions(...), progress, cancel) -> IndexSummary
    open_index(index_dir, expect=model_info) -> Index
    Index.search(Query | code | floats, k, bbox=None, bbox_crs="EPSG:4326", collapse=True)
    write_geojson / write_gpkg / contact_sheet
"""

from model_runtime.index.binary import BinaryIndex
from model_runtime.index.build import BuildOptions, build_index
from model_runtime.index.export import contact_sheet, write_geojson, write_gpkg
from model_runtime.index.query import Index, Query, open_index
from model_runtime.index.store import Store, check_model
from model_runtime.index.units import WorkUnit, encode_unit, plan_source

__all__ = [
    "BinaryIndex",
    "BuildOptions",
    "Index",
    "Query",
    "Store",
    "WorkUnit",
    "build_index",
    "check_model",
    "contact_sheet",
    "encode_unit",
    "open_index",
    "plan_source",
    "write_geojson",
    "write_gpkg",
]
