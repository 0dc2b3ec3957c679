"""What the plugin says to an analyst: plain QGIS words for the protocol's values.

Errors are worded from their machine-readable ``code`` (``protocol.ERROR_CODES``), never by
rewriting the runtime's own text, which stays available as details (the message bar's "more"
and the CACH log). Every message names what the user can do in QGIS. Plain Python, no Qt, so it
is testable without QGIS.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from ..model_runtime.protocol import (
    NOT_GEOREFERENCED_NOTE,
    ErrorInfo,
    Estimate,
    Hit,
    IndexSummary,
    Skipped,
)


def translate(context: str, text: str) -> str:
    """``text`` in the user's language (Qt's translator; as is without Qt, e.g. in plain
    tests). Call it with literals, so that ``make i18n`` (pylupdate5) finds them."""
    try:
        from qgis.PyQt.QtCore import QCoreApplication
    except ImportError:
        return text
    return QCoreApplication.translate(context, text)


def tr(text: str) -> str:
    """``text`` in the user's language. pylupdate5 files a ``tr()`` call that is not a method
    under the context "@default", so it is looked up there. One argument, so that a formatter
    never adds the trailing comma that hides a call from pylupdate5."""
    return translate("@default", text)


INDEX_MENU = "Raster ▸ CACH ▸ Index raster folder…"
RUNTIME_MENU = "Raster ▸ CACH ▸ Runtime settings…"
ADAPT_MENU = "Raster ▸ CACH ▸ Adapt to this archive…"
LOG_PANEL = "View ▸ Panels ▸ Log Messages (tab CACH)"
NOT_GEOREFERENCED = "not georeferenced"

#: message levels, named without Qt (the Qt side maps them onto Qgis.MessageLevel)
INFO, SUCCESS, WARNING, CRITICAL = "info", "success", "warning", "critical"

_BY_CODE: dict[str, str] = {
    "index_missing": (
        "This folder is not a CACH index. Choose an index folder made with "
        f"{INDEX_MENU}, or index your rasters there first."
    ),
    "index_empty": f"This index holds no tiles yet. Index a raster folder into it with {INDEX_MENU}",
    "index_incomplete": (
        "Indexing into this folder was interrupted. Run "
        f"{INDEX_MENU} on the same raster folder again to finish it; what was indexed is kept."
    ),
    "index_corrupt": (
        f"This index is damaged. Make it again with {INDEX_MENU} (tick “rebuild from scratch”)."
    ),
    "index_newer": (
        "This index was made by a newer version of CACH for QGIS. Update the plugin in "
        "Plugins ▸ Manage and Install Plugins."
    ),
    "index_locked": (
        "Another indexing run is writing this index. Wait until it ends (task manager in the "
        "status bar), then try again."
    ),
    "index_readonly": (
        "This index is read-only (a read-only drive or folder): it can be searched but not "
        "indexed into or adapted. To change it, copy the index folder somewhere writable and "
        "choose the copy."
    ),
    "index_needs_rebuild": (
        "This index was made in a way that cannot do this yet. Re-index it with "
        f"{INDEX_MENU} (tick “rebuild from scratch”), then try again."
    ),
    "model_mismatch": (
        f"This index was made with a different model. Re-index it with {INDEX_MENU} "
        "(tick “rebuild from scratch”), or choose another index."
    ),
    "file_not_found": "A file or folder no longer exists. Check the folder you chose.",
    "not_a_raster": "This file is not a raster QGIS/GDAL can read. Choose a raster or a folder.",
    "source_refused": (
        "A raster points at a network or outside source, which CACH never reads from inside a "
        "file. Index the source rasters themselves."
    ),
    "source_gone": (
        f"The raster this tile came from is gone. Re-index the folder with {INDEX_MENU}"
    ),
    "tile_not_found": (
        "This tile is no longer in the index (it was re-indexed). Run the search again."
    ),
    "bad_coordinates": (
        "This point lies outside what its coordinate system can express. Click inside an "
        "indexed raster."
    ),
    "image_unreadable": "The query image cannot be read. Choose a JPEG, PNG or GeoTIFF image.",
    "heads_unreadable": f"The model file cannot be read. Check it in {RUNTIME_MENU}",
    "data_unreadable": "A file cannot be read. Check that it opens in QGIS, then try again.",
    "no_tiles": (
        "Nothing in this folder could be indexed. Choose a folder that holds rasters "
        "(GeoTIFF, JPEG 2000, VRT, IMG, PNG, JPEG)."
    ),
    "remote_denied": (
        "The object storage refused the credentials (or none were found). Check the AWS "
        "credentials QGIS was started with, then try again."
    ),
    "remote_unreachable": (
        "The object-storage endpoint cannot be reached. Check the network, then try again."
    ),
    "extra_missing": (
        "A part of the runtime this needs is not installed (the standard runtime has no "
        "PyTorch: training and the GPU need the 'GPU and training' runtime; s3:// and clusters "
        f"need their own parts). Create the runtime with it in {RUNTIME_MENU}"
    ),
    "cluster_unreachable": f"The compute cluster cannot be reached. Check {RUNTIME_MENU}",
    "unknown_crs": "The coordinate system is not known to the runtime. Set the project CRS to "
    "a standard one (Project ▸ Properties ▸ CRS) and try again.",
    "no_heads": f"The runtime has no model for these settings. Check {RUNTIME_MENU}",
    "unknown_backbone": f"The runtime does not know this model. Check {RUNTIME_MENU}",
    "backend_unavailable": (f"The runtime cannot use this device or engine. Check {RUNTIME_MENU}"),
    "bad_value": f"A setting has a value the runtime does not accept. Check {RUNTIME_MENU}",
    "cancelled": "Cancelled.",
    "disk_full": (
        "The disk is full. Free some space and run it again; nothing half-written was kept."
    ),
    "confirm_large_run": "This run is very large and waits for your go-ahead.",
    "confirm_retile": (
        "The tiling chosen is not the index's own: indexing with it re-tiles every folder of "
        "the index, and waits for your go-ahead (or keep the index's tiling)."
    ),
    "internal": (
        f"Something went wrong inside the CACH runtime (a bug). Details are in {LOG_PANEL}; "
        "please report them."
    ),
}

_BY_TYPE: dict[str, str] = {
    "protocol": (
        f"The plugin and the runtime do not understand each other (a bug). Details are in "
        f"{LOG_PANEL}; please report them."
    ),
    "data": "A file cannot be read. Check the files you chose, then try again.",
    "config": f"A runtime setting is not valid. Check {RUNTIME_MENU}",
    "index": f"This index cannot be used now. Choose another one or re-index it with {INDEX_MENU}",
    "model_mismatch": _BY_CODE["model_mismatch"],
    "cancelled": _BY_CODE["cancelled"],
    "disk_full": _BY_CODE["disk_full"],
    "confirm": _BY_CODE["confirm_large_run"],
    "internal": _BY_CODE["internal"],
}

#: short reasons for a skipped file, by code
_SKIP_REASONS: dict[str, str] = {
    "not_a_raster": "not a raster",
    "source_refused": "refers to a network or outside source",
    "file_not_found": "missing",
    "source_gone": "missing",
    "bad_coordinates": "its corners fall outside its projection",
    "data_unreadable": "cannot be read",
    "image_unreadable": "cannot be read",
}


def error_text(error: ErrorInfo) -> str:
    """The message-bar text of an error, worded from its code.

    ``worker_unavailable`` errors are the plugin's own (the runtime could not start or died), so
    their message is already written for QGIS users and is used as is."""
    if error.code == "worker_unavailable" or error.type == "runtime":
        return error.message
    text = _BY_CODE.get(error.code) or _BY_TYPE.get(error.type) or _BY_CODE["internal"]
    path = error.details.get("path") if isinstance(error.details, dict) else None
    if path and error.type in ("data", "index"):
        text = f"{text} ({path})"
    return text


def error_details(error: ErrorInfo) -> str:
    """The runtime's own words and code, for the message bar's "more" and the log."""
    return f"{error.message} [{error.type}/{error.code}]"


def error_level(error: ErrorInfo) -> str:
    """Problems the user can fix are warnings; bugs and a dead runtime are critical."""
    if error.type == "cancelled":
        return INFO
    if error.type in ("internal", "protocol", "runtime"):
        return CRITICAL
    return WARNING


# --- index runs ------------------------------------------------------------------------------
def _name(path: str) -> str:
    return PurePath(path).name or path


def skipped_text(skipped: tuple[Skipped, ...] | list[Skipped], limit: int = 3) -> str:
    """ "3 files skipped: a.jpg (not a raster), b.vrt (refers to ...), …"."""
    if not skipped:
        return ""
    shown = [f"{_name(s.path)} ({_SKIP_REASONS.get(s.code, 'cannot be read')})" for s in skipped]
    more = ", …" if len(shown) > limit else ""
    noun = "file" if len(skipped) == 1 else "files"
    return f"{len(skipped)} {noun} skipped: {', '.join(shown[:limit])}{more}"


def skipped_details(skipped: tuple[Skipped, ...] | list[Skipped]) -> str:
    """Every skipped file with the runtime's reason, one per line."""
    return "\n".join(f"{s.path}: {s.reason} [{s.code}]" for s in skipped)


def summary_text(summary: IndexSummary) -> tuple[str, str]:
    """(text, level) of a finished index run. A run that leaves nothing to search is a
    warning naming why, never a success."""
    skipped = skipped_text(summary.skipped)
    if summary.indexed_nothing:
        why = skipped or "the folder holds no raster files"
        return (
            f"Nothing was indexed: {why}. Choose a folder with rasters in {INDEX_MENU}",
            WARNING,
        )
    files = summary.added + summary.updated
    text = f"Index ready: {summary.tiles} tiles to search"
    changes = [
        f"{n} {what}"
        for n, what in (
            (files, "files added or updated"),
            (summary.removed, "removed"),
            (summary.unchanged, "unchanged"),
        )
        if n
    ]
    if changes:
        text += f" ({', '.join(changes)})"
    if summary.pending_files:
        text += (
            f"; {summary.pending_files} files not reached yet: index the folder again to add them"
        )
    if skipped:
        return f"{text}. {skipped}.", WARNING
    return f"{text}.", SUCCESS


def estimate_text(estimate: Estimate) -> str:
    """A dry run in one line: files, new tiles, data to read, expected time."""
    new = estimate.tiles if estimate.new_tiles is None else estimate.new_tiles
    text = (
        f"{_count(estimate.files, 'file')}, {new:,} new tiles ({estimate.tiles:,} in all), "
        f"{estimate.bytes / 1e6:,.1f} MB to read, about {duration_text(estimate.seconds)}"
    )
    skipped = skipped_text(estimate.skipped)
    return f"{text}; {skipped}" if skipped else text


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def confirm_text(estimate: Estimate) -> str:
    """The question of the large-run dialog."""
    return (
        f"This run would index {estimate_text(estimate)}.\n\n"
        "It keeps running in the background (task manager in the status bar) and can be "
        "cancelled there; what is done by then is kept. Index anyway?"
    )


# --- search results ------------------------------------------------------------------------------
def weak_match_text(query: str) -> str:
    """The panel's plain-words note when even the best tiles are weak matches."""
    what = f"“{query}”" if query else "what you asked for"
    return (
        f"Weak matches: the best tiles are unlikely to show {what}. Your archive may not "
        "contain this kind of scene. Try other words, or index more imagery."
    )


def confidence_text(confidence: float | None) -> str:
    """ "confidence 64 %", or "" when the query kind has no calibration."""
    if confidence is None:
        return ""
    percent = round(100 * confidence)
    return "confidence < 1 %" if percent < 1 else f"confidence {percent} %"


def hit_text(hit: Hit, mark: str = "") -> str:
    """Two lines of the results list: rank and match, then the tile's name."""
    match = confidence_text(hit.confidence) or f"score {hit.score:.2f}"
    second = hit.name if hit.georeferenced else f"{hit.name} — {NOT_GEOREFERENCED}"
    return f"#{hit.rank}  {match}{mark}\n{second}"


def hit_tooltip(hit: Hit) -> str:
    """Everything about one result: where it is, how well it matches, and why it is not on the
    map when it is not."""
    lines = [hit.source, f"window (col, row, width, height): {list(hit.window)}"]
    lines.append(f"tile {hit.tile_id}, score {hit.score:.3f}")
    if hit.hamming is not None:
        lines[-1] += f", Hamming distance {hit.hamming}"
    if hit.confidence is not None:
        lines.append(
            f"{confidence_text(hit.confidence)}: the estimated chance that this tile shows "
            "what you asked for"
        )
    if not hit.georeferenced:
        lines.append(f"{NOT_GEOREFERENCED_NOTE}. Select it to view the image.")
    return "\n".join(lines)


def results_status(n_hits: int, n_not_georef: int, timing_ms: dict[str, Any], what: str) -> str:
    """The status line under the results: how many tiles, how fast, what is off the map."""
    total = timing_ms.get("total") if timing_ms else None
    text = f"{n_hits} tiles {what}".rstrip()
    if total is not None:
        text += f" in {float(total):.0f} ms"
    if n_not_georef:
        text += f"; {n_not_georef} {NOT_GEOREFERENCED} (in the list only)"
    return text + "."


def model_provenance(model: dict[str, Any]) -> str:
    """The footprint layer's ``model`` field: method, backbone, bits and heads."""
    parts = [str(model[k]) for k in ("method", "backbone", "bits", "heads") if model.get(k)]
    return " / ".join(parts)


def model_details(model: dict[str, Any], index: dict[str, Any]) -> str:
    """The model and index behind a result, for a tooltip (kept out of the status line)."""
    lines = []
    if model:
        method = str(model.get("method") or "").upper()
        lines.append(
            f"Model: {method} hashing, {model.get('backbone', '?')} encoders, "
            f"{model.get('bits', '?')}-bit codes"
        )
        if model.get("heads"):
            sha = str(model.get("heads_sha") or "")[:12]
            lines.append(f"Heads: {model['heads']}" + (f" (sha {sha})" if sha else ""))
        runs = [str(model[k]) for k in ("device", "backend", "precision") if model.get(k)]
        if runs:
            lines.append("Runs on: " + ", ".join(runs))
    if index:
        line = f"Index: {index.get('path', '?')}"
        if index.get("tiles") is not None:
            line += f", {index['tiles']} tiles"
        if index.get("adapted"):
            line += ", adapted to its archive"
        lines.append(line)
    return "\n".join(lines)


def outdated_text(index_path: str) -> str:
    return (
        f"The index {_name(index_path)} was made with an earlier model. Re-index it to search "
        "with the new one (better on scene types the old model never saw)."
    )


def adapt_question(index_path: str) -> str:
    return (
        f"Adapt the model to the imagery of {_name(index_path)}?\n\n"
        "CACH fine-tunes the image side of its model on this index's own tiles (no labels "
        "needed) and re-hashes the index, so that similar tiles of your archive find each other "
        "better. It runs in the background (task manager in the status bar) and can be "
        "cancelled there. Only this index changes; other indexes keep the shipped model."
    )


def adapt_done_text(result: dict[str, Any]) -> str:
    tiles = result.get("tiles")
    seconds = result.get("seconds")
    text = "Adapted the model to this archive"
    if tiles is not None:
        text += f" and re-hashed its {tiles} tiles"
    if seconds is not None:
        text += f" in {duration_text(float(seconds))}"
    return text + ". Searches of this index now use it."


def index_cancelled_text() -> str:
    return tr(
        "Indexing cancelled. Files already indexed are kept; index the folder again to finish.",
    )


def cancel_outcome_text(estimate: Estimate) -> tuple[str, bool]:
    """(text, complete) after a cancelled index run, from a dry run of the same run (which
    counts what is still to do): a cancel that came after the last tile was written left a
    complete index, and says so."""
    todo = estimate.tiles if estimate.new_tiles is None else estimate.new_tiles
    if todo == 0:
        text = tr(
            "Indexing finished before the cancel took effect: every file is indexed, the index "
            "is complete and is now chosen in the search panel.",
        )
        return text, True
    text = tr(
        "Indexing cancelled: what was indexed is kept and searchable; {todo} tiles of {files} "
        "files are still to do. Index the folder again to finish.",
    )
    return text.format(todo=f"{todo:,}", files=f"{estimate.files:,}"), False
