"""The hash index: SQLite metadata store, faiss binary codes, builder, queries, exporters.

Public API (what the pipeline, CLI and worker call)::

    build_index(index_dir, paths, options, encoder, model_info, progress, cancel) -> IndexSummary
    open_index(index_dir, expect=model_info) -> Index
    Index.search(query, k, bbox=None, bbox_crs="EPSG:4326", collapse=True) -> list[Hit]
    combine(vectors, weights) -> float query
    write_geojson / write_gpkg / contact_sheet
"""

from model_runtime.index.binary import BinaryIndex, combine, hamming, pack, unpack_signs
from model_runtime.index.builder import Encoder, IndexSummary, build_index
from model_runtime.index.export import contact_sheet, write_geojson, write_gpkg
from model_runtime.index.query import Hit, Index, open_index
from model_runtime.index.store import Store, check_model

__all__ = [
    "BinaryIndex",
    "Encoder",
    "Hit",
    "Index",
    "IndexSummary",
    "Store",
    "build_index",
    "check_model",
    "combine",
    "contact_sheet",
    "hamming",
    "open_index",
    "pack",
    "unpack_signs",
    "write_geojson",
    "write_gpkg",
]
