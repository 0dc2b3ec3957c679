"""The footprint layer schema, as the CLI's GeoPackage and the plugin's layers both write it."""

from __future__ import annotations

from typing import Any

from .envelope import dumps
from .results import Hit

#: ``georeferenced`` false rows have no geometry: ``note`` then says why.
FOOTPRINT_FIELDS: tuple[tuple[str, str], ...] = (
    ("rank", "int"),
    ("tile_id", "int"),
    ("source", "text"),
    ("col_off", "int"),
    ("row_off", "int"),
    ("width", "int"),
    ("height", "int"),
    ("crs", "text"),
    ("georeferenced", "bool"),
    ("hamming", "int"),
    ("score", "real"),
    ("confidence", "real"),
    ("footprint_src", "text"),
    ("query", "text"),
    ("model", "text"),
    ("index", "text"),
    ("note", "text"),
)
#: ``note`` of a hit without geometry
NOT_GEOREFERENCED_NOTE = "not georeferenced: the source image has no CRS, so it has no place on a map"


def display_text(text: str) -> str:
    """``text`` as valid Unicode: a file name that is not UTF-8 (its bytes held as surrogate
    escapes) shows its undecodable bytes as ``\\xNN``; layers and GeoPackages need UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def footprint_row(hit: Hit, query: str = "", model: str = "", index: str = "") -> dict[str, Any]:
    """The attribute values of one hit feature, keyed by :data:`FOOTPRINT_FIELDS` names."""
    col, row, width, height = hit.window
    return {
        "rank": hit.rank,
        "tile_id": hit.tile_id,
        "source": display_text(hit.source),
        "col_off": col,
        "row_off": row,
        "width": width,
        "height": height,
        "crs": hit.crs,
        "georeferenced": hit.georeferenced,
        "hamming": hit.hamming,
        "score": hit.score,
        "confidence": hit.confidence,
        "footprint_src": dumps(hit.footprint_src),
        "query": query,
        "model": model,
        "index": index,
        "note": "" if hit.georeferenced else NOT_GEOREFERENCED_NOTE,
    }
