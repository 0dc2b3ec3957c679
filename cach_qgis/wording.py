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

#: the places a message may point at, by the name its text uses for them
_MENUS = {
    "INDEX_MENU": INDEX_MENU,
    "RUNTIME_MENU": RUNTIME_MENU,
    "ADAPT_MENU": ADAPT_MENU,
    "LOG_PANEL": LOG_PANEL,
}


def QT_TR_NOOP(text: str) -> str:  # noqa: N802 - the name pylupdate5 looks for
    """Marks ``text`` for the translation template; it is translated where it is shown."""
    return text


#: message levels, named without Qt (the Qt side maps them onto Qgis.MessageLevel)
INFO, SUCCESS, WARNING, CRITICAL = "info", "success", "warning", "critical"

_BY_CODE: dict[str, str] = {
    "index_missing": QT_TR_NOOP(
        "This folder is not a CACH index. Choose an index folder made with "
        "{INDEX_MENU}, or index your rasters there first."
    ),
    "index_empty": QT_TR_NOOP(
        "This index holds no tiles yet. Index a raster folder into it with {INDEX_MENU}"
    ),
    "index_incomplete": QT_TR_NOOP(
        "Indexing into this folder was interrupted. Run "
        "{INDEX_MENU} on the same raster folder again to finish it; what was indexed is kept."
    ),
    "index_corrupt": QT_TR_NOOP(
        "This index is damaged. Make it again with {INDEX_MENU} (tick “rebuild from scratch”)."
    ),
    "index_newer": QT_TR_NOOP(
        "This index was made by a newer version of CACH for QGIS. Update the plugin in "
        "Plugins ▸ Manage and Install Plugins."
    ),
    "index_locked": QT_TR_NOOP(
        "Another indexing run is writing this index. Wait until it ends (task manager in the "
        "status bar), then try again."
    ),
    "index_readonly": QT_TR_NOOP(
        "This index is read-only (a read-only drive or folder): it can be searched but not "
        "indexed into or adapted. To change it, copy the index folder somewhere writable and "
        "choose the copy."
    ),
    "index_needs_rebuild": QT_TR_NOOP(
        "This index was made in a way that cannot do this yet. Re-index it with "
        "{INDEX_MENU} (tick “rebuild from scratch”), then try again."
    ),
    "model_mismatch": QT_TR_NOOP(
        "This index was made with a different model. Re-index it with {INDEX_MENU} "
        "(tick “rebuild from scratch”), or choose another index."
    ),
    "saved_search_invalid": QT_TR_NOOP(
        "This file is not a saved CACH search, or it is damaged. Choose a file made with "
        "“Save refined search…”."
    ),
    "saved_search_mismatch": QT_TR_NOOP(
        "This saved search was made with another model, so it cannot run on this index. Choose "
        "an index made with the same model, or mark tiles on this index and save a new search."
    ),
    "file_not_found": QT_TR_NOOP("A file or folder no longer exists. Check the folder you chose."),
    "not_a_raster": QT_TR_NOOP(
        "This file is not a raster QGIS/GDAL can read. Choose a raster or a folder."
    ),
    "source_refused": QT_TR_NOOP(
        "A raster points at a network or outside source, which CACH never reads from inside a "
        "file. Index the source rasters themselves."
    ),
    "source_gone": QT_TR_NOOP(
        "The raster this tile came from is gone. Re-index the folder with {INDEX_MENU}"
    ),
    "tile_not_found": QT_TR_NOOP(
        "This tile is no longer in the index (it was re-indexed). Run the search again."
    ),
    "bad_coordinates": QT_TR_NOOP(
        "This point lies outside what its coordinate system can express. Click inside an "
        "indexed raster."
    ),
    "image_unreadable": QT_TR_NOOP(
        "The query image cannot be read. Choose a JPEG, PNG or GeoTIFF image."
    ),
    "heads_unreadable": QT_TR_NOOP("The model file cannot be read. Check it in {RUNTIME_MENU}"),
    "data_unreadable": QT_TR_NOOP(
        "A file cannot be read. Check that it opens in QGIS, then try again."
    ),
    "no_tiles": QT_TR_NOOP(
        "Nothing in this folder could be indexed. Choose a folder that holds rasters "
        "(GeoTIFF, JPEG 2000, VRT, IMG, PNG, JPEG)."
    ),
    "remote_denied": QT_TR_NOOP(
        "The object storage refused the credentials (or none were found). Check the AWS "
        "credentials QGIS was started with, then try again."
    ),
    "remote_unreachable": QT_TR_NOOP(
        "The object-storage endpoint cannot be reached. Check the network, then try again."
    ),
    "extra_missing": QT_TR_NOOP(
        "A part of the runtime this needs is not installed (the standard runtime has no "
        "PyTorch: training and the GPU need the 'GPU and training' runtime; s3:// and clusters "
        "need their own parts). Create the runtime with it in {RUNTIME_MENU}"
    ),
    "cluster_unreachable": QT_TR_NOOP(
        "The compute cluster cannot be reached. Check {RUNTIME_MENU}"
    ),
    "unknown_crs": QT_TR_NOOP(
        "The coordinate system is not known to the runtime. Set the project CRS to "
        "a standard one (Project ▸ Properties ▸ CRS) and try again."
    ),
    "no_heads": QT_TR_NOOP("The runtime has no model for these settings. Check {RUNTIME_MENU}"),
    "unknown_backbone": QT_TR_NOOP("The runtime does not know this model. Check {RUNTIME_MENU}"),
    "backend_unavailable": QT_TR_NOOP(
        "The runtime cannot use this device or engine. Check {RUNTIME_MENU}"
    ),
    "bad_value": QT_TR_NOOP(
        "A setting has a value the runtime does not accept. Check {RUNTIME_MENU}"
    ),
    "cancelled": QT_TR_NOOP("Cancelled."),
    "disk_full": QT_TR_NOOP(
        "The disk is full. Free some space and run it again; nothing half-written was kept."
    ),
    "confirm_large_run": QT_TR_NOOP("This run is very large and waits for your go-ahead."),
    "confirm_retile": QT_TR_NOOP(
        "The tiling chosen is not the index's own: indexing with it re-tiles every folder of "
        "the index, and waits for your go-ahead (or keep the index's tiling)."
    ),
    "internal": QT_TR_NOOP(
        "Something went wrong inside the CACH runtime (a bug). Details are in {LOG_PANEL}; "
        "please report them."
    ),
}

_BY_TYPE: dict[str, str] = {
    "protocol": QT_TR_NOOP(
        "The plugin and the runtime do not understand each other (a bug). Details are in "
        "{LOG_PANEL}; please report them."
    ),
    "data": QT_TR_NOOP("A file cannot be read. Check the files you chose, then try again."),
    "config": QT_TR_NOOP("A runtime setting is not valid. Check {RUNTIME_MENU}"),
    "index": QT_TR_NOOP(
        "This index cannot be used now. Choose another one or re-index it with {INDEX_MENU}"
    ),
    "model_mismatch": _BY_CODE["model_mismatch"],
    "cancelled": _BY_CODE["cancelled"],
    "disk_full": _BY_CODE["disk_full"],
    "confirm": _BY_CODE["confirm_large_run"],
    "internal": _BY_CODE["internal"],
}

#: short reasons for a skipped file, by code
_SKIP_REASONS: dict[str, str] = {
    "not_a_raster": QT_TR_NOOP("not a raster"),
    "source_refused": QT_TR_NOOP("refers to a network or outside source"),
    "file_not_found": QT_TR_NOOP("missing"),
    "source_gone": QT_TR_NOOP("missing"),
    "bad_coordinates": QT_TR_NOOP("its corners fall outside its projection"),
    "data_unreadable": QT_TR_NOOP("cannot be read"),
    "image_unreadable": QT_TR_NOOP("cannot be read"),
}


def error_text(error: ErrorInfo) -> str:
    """The message-bar text of an error, worded from its code.

    ``worker_unavailable`` errors are the plugin's own (the runtime could not start or died), so
    their message is already written for QGIS users and is used as is."""
    if error.code == "worker_unavailable" or error.type == "runtime":
        return error.message
    text = _BY_CODE.get(error.code) or _BY_TYPE.get(error.type) or _BY_CODE["internal"]
    text = tr(text).format(**_MENUS)
    path = error.details.get("path") if isinstance(error.details, dict) else None
    if path and error.type in ("data", "index"):
        text = f"{text} ({path})"  # a path is not translated
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
    unreadable = tr("cannot be read")
    shown = [f"{_name(s.path)} ({tr(_SKIP_REASONS.get(s.code, unreadable))})" for s in skipped]
    more = ", …" if len(shown) > limit else ""
    text = tr("1 file skipped: {files}") if len(skipped) == 1 else tr("{n} files skipped: {files}")
    return text.format(n=len(skipped), files=", ".join(shown[:limit]) + more)


def skipped_details(skipped: tuple[Skipped, ...] | list[Skipped]) -> str:
    """Every skipped file with the runtime's reason, one per line."""
    return "\n".join(f"{s.path}: {s.reason} [{s.code}]" for s in skipped)


def summary_text(summary: IndexSummary) -> tuple[str, str]:
    """(text, level) of a finished index run. A run that leaves nothing to search is a
    warning naming why, never a success."""
    skipped = skipped_text(summary.skipped)
    if summary.indexed_nothing:
        why = skipped or tr("the folder holds no raster files")
        text = tr("Nothing was indexed: {why}. Choose a folder with rasters in {INDEX_MENU}")
        return text.format(why=why, INDEX_MENU=INDEX_MENU), WARNING
    files = summary.added + summary.updated
    text = tr("Index ready: {tiles} tiles to search").format(tiles=summary.tiles)
    changes = [
        what.format(n=n)
        for n, what in (
            (files, tr("{n} files added or updated")),
            (summary.removed, tr("{n} removed")),
            (summary.unchanged, tr("{n} unchanged")),
        )
        if n
    ]
    if changes:
        text += f" ({', '.join(changes)})"
    if summary.pending_files:
        text += tr("; {n} files not reached yet: index the folder again to add them").format(
            n=summary.pending_files
        )
    if skipped:
        return f"{text}. {skipped}.", WARNING
    return f"{text}.", SUCCESS


def estimate_text(estimate: Estimate) -> str:
    """A dry run in one line: files, new tiles, data to read, expected time."""
    new = estimate.tiles if estimate.new_tiles is None else estimate.new_tiles
    files = tr("1 file") if estimate.files == 1 else tr("{n} files")
    text = tr("{files}, {new} new tiles ({tiles} in all), {mb} MB to read, about {time}").format(
        files=files.format(n=f"{estimate.files:,}"),
        new=f"{new:,}",
        tiles=f"{estimate.tiles:,}",
        mb=f"{estimate.bytes / 1e6:,.1f}",
        time=duration_text(estimate.seconds),
    )
    if estimate.setup_seconds:
        text += tr(" (of which {setup} to load the model first)").format(
            setup=duration_text(estimate.setup_seconds)
        )
    skipped = skipped_text(estimate.skipped)
    return f"{text}; {skipped}" if skipped else text


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return tr("{n} s").format(n=f"{seconds:.0f}")
    if seconds < 5400:
        return tr("{n} min").format(n=f"{seconds / 60:.0f}")
    return tr("{n} h").format(n=f"{seconds / 3600:.1f}")


def confirm_text(estimate: Estimate) -> str:
    """The question of the large-run dialog."""
    return tr(
        "This run would index {estimate}.\n\n"
        "It keeps running in the background (task manager in the status bar) and can be "
        "cancelled there; what is done by then is kept. Index anyway?"
    ).format(estimate=estimate_text(estimate))


# --- search results ------------------------------------------------------------------------------
def weak_match_text(query: str) -> str:
    """The panel's plain-words note when even the best tiles are weak matches."""
    what = f"“{query}”" if query else tr("what you asked for")
    return tr(
        "Weak matches: the best tiles are unlikely to show {what}. Your archive may not "
        "contain this kind of scene. Try other words, or index more imagery."
    ).format(what=what)


def confidence_text(confidence: float | None) -> str:
    """ "confidence 64 %", or "" when the query kind has no calibration."""
    if confidence is None:
        return ""
    percent = round(100 * confidence)
    return tr("confidence < 1 %") if percent < 1 else tr("confidence {n} %").format(n=percent)


def shared_confidence(hits: list[Hit]) -> float | None:
    """The one confidence every hit has, when there are several and all are equal: the
    calibration's prior for imagery on which the evidence cannot tell tiles apart (then each row
    shows its score, and the status line gives the prior once)."""
    values = {h.confidence for h in hits}
    if len(hits) < 2 or len(values) != 1 or None in values:
        return None
    return hits[0].confidence


def hit_text(hit: Hit, mark: str = "", shared: float | None = None) -> str:
    """Two lines of the results list: rank and match, then the tile's name. ``shared``: the
    confidence all hits share (:func:`shared_confidence`), left to the status line."""
    match = "" if shared is not None else confidence_text(hit.confidence)
    match = match or tr("score {n}").format(n=f"{hit.score:.2f}")
    not_on_map = tr("not georeferenced")
    second = hit.name if hit.georeferenced else f"{hit.name} — {not_on_map}"
    return f"#{hit.rank}  {match}{mark}\n{second}"


def mark_text(hit: Hit, right: bool) -> str:
    """One row of the marks list: the mark, then the tile (rank when it came from a result)."""
    mark = tr("✓ right") if right else tr("✗ wrong")
    rank = f"#{hit.rank}  " if hit.rank else ""
    return tr("{mark}  {rank}{name} (tile {id})").format(
        mark=mark, rank=rank, name=hit.name, id=hit.tile_id
    )


def marks_summary(right: int, wrong: int) -> str:
    """The line above the marks list."""
    if not right and not wrong:
        return tr(
            "Marks: none. Mark results right or wrong (buttons below the results, or right-click "
            "a result or a tile on the map), then Refine."
        )
    return tr("Marks: {right} right, {wrong} wrong. Refine learns from them.").format(
        right=right, wrong=wrong
    )


def saved_search_text(path: str) -> str:
    """The message after a refined search was kept in a file."""
    text = tr("Refined search saved to {path}. Run it on other imagery with “Run saved search…”.")
    return text.format(path=path)


def footprints_saved_text(path: str, no_geometry: list[int]) -> str:
    """The message after footprints were written: where, and which rows have no geometry."""
    text = tr("Footprints saved to {path}.").format(path=path)
    if no_geometry:
        ranks = ", ".join(f"#{r}" for r in no_geometry)
        rows = tr("{n} rows have no geometry ({ranks}): {why} (see their 'note' field).")
        text += " " + rows.format(n=len(no_geometry), ranks=ranks, why=NOT_GEOREFERENCED)
    return text


#: the search session's notes (``session.Note``) the panel words in its status line
_NOTES: dict[str, str] = {
    "no_query": QT_TR_NOOP("Type what you are looking for, or mark example tiles."),
    "no_index": QT_TR_NOOP("Choose an index folder first, or make one with {INDEX_MENU}"),
    "searching": QT_TR_NOOP("Searching…"),
    "cancelled": QT_TR_NOOP("Search cancelled."),
    "index_changed": QT_TR_NOOP("Index changed: press Search to search this index."),
    "no_selection": QT_TR_NOOP("Select a result first."),
    "no_result": QT_TR_NOOP("Run a search first."),
    "no_marks": QT_TR_NOOP("Mark tiles right or wrong first, then save."),
}


def note_text(note: str) -> str:
    """The words for a session note (a ``session.Note`` or its code); "" for a note that the
    panel shows otherwise (a weak match, an outdated index)."""
    text = _NOTES.get(getattr(note, "value", note), "")
    return tr(text).format(**_MENUS) if text else ""


def hit_tooltip(hit: Hit) -> str:
    """Everything about one result: where it is, how well it matches, and why it is not on the
    map when it is not."""
    lines = [
        hit.source,
        tr("window (col, row, width, height): {window}").format(window=list(hit.window)),
    ]
    lines.append(tr("tile {id}, score {score}").format(id=hit.tile_id, score=f"{hit.score:.3f}"))
    if hit.hamming is not None:
        lines[-1] += tr(", Hamming distance {n}").format(n=hit.hamming)
    if hit.confidence is not None:
        lines.append(
            tr("{confidence}: the estimated chance that this tile shows what you asked for").format(
                confidence=confidence_text(hit.confidence)
            )
        )
    if not hit.georeferenced:
        lines.append(tr("{note}. Select it to view the image.").format(note=NOT_GEOREFERENCED_NOTE))
    return "\n".join(lines)


def results_status(
    n_hits: int,
    n_not_georef: int,
    timing_ms: dict[str, Any],
    what: str,
    ranks: tuple[int, int] | None = None,
    shared: float | None = None,
) -> str:
    """The status line under the results: how many tiles (or, on a page after the first,
    which ``ranks``), how fast, what is off the map, and the confidence they all share."""
    total = timing_ms.get("total") if timing_ms else None
    if ranks is not None:
        text = tr("Results {first}–{last} {what}").format(
            first=ranks[0], last=ranks[1], what=what
        )
    else:
        text = tr("{n} tiles {what}").format(n=n_hits, what=what)
    text = text.rstrip()
    if total is not None:
        text += tr(" in {ms} ms").format(ms=f"{float(total):.0f}")
    if n_not_georef:
        text += tr("; {n} not georeferenced (in the list only)").format(n=n_not_georef)
    if shared is not None:
        text += tr("; on imagery like this the evidence cannot tell these tiles apart: each "
                   "shows what you asked for with a chance of about {n} %").format(
                       n=max(1, round(100 * shared)))
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
            tr("Model: {method} hashing, {backbone} encoders, {bits}-bit codes").format(
                method=method, backbone=model.get("backbone", "?"), bits=model.get("bits", "?")
            )
        )
        if model.get("heads"):
            sha = str(model.get("heads_sha") or "")[:12]
            lines.append(
                tr("Heads: {heads}").format(heads=model["heads"]) + (f" (sha {sha})" if sha else "")
            )
        runs = [str(model[k]) for k in ("device", "backend", "precision") if model.get(k)]
        if runs:
            lines.append(tr("Runs on: {runs}").format(runs=", ".join(runs)))
    if index:
        line = tr("Index: {path}").format(path=index.get("path", "?"))
        if index.get("tiles") is not None:
            line += tr(", {n} tiles").format(n=index["tiles"])
        if index.get("adapted"):
            line += tr(", adapted to its archive")
        lines.append(line)
    return "\n".join(lines)


def outdated_text(index_path: str) -> str:
    return tr(
        "The index {name} was made with an earlier model. Re-index it to search "
        "with the new one (better on scene types the old model never saw)."
    ).format(name=_name(index_path))


def adapt_question(index_path: str) -> str:
    return tr(
        "Adapt the model to the imagery of {name}?\n\n"
        "CACH fine-tunes the image side of its model on this index's own tiles (no labels "
        "needed) and re-hashes the index. What it improves: text searches (by about 0.03 mAP "
        "on two archives of scene types the model never saw) and, on large archives, which "
        "tiles an image search considers first. It does not change the order of similar-image "
        "results, which are ranked by the image features already. It runs in the background "
        "(task manager in the status bar) and can be cancelled there. Only this index changes; "
        "other indexes keep the shipped model."
    ).format(name=_name(index_path))


def adapt_done_text(result: dict[str, Any]) -> str:
    tiles = result.get("tiles")
    seconds = result.get("seconds")
    text = tr("Adapted the model to this archive")
    if tiles is not None:
        text += tr(" and re-hashed its {n} tiles").format(n=tiles)
    if seconds is not None:
        text += tr(" in {time}").format(time=duration_text(float(seconds)))
    return text + tr(". Searches of this index now use it.")


def index_cancelled_text() -> str:
    return tr(
        "Indexing cancelled. Files already indexed are kept; index the folder again to finish."
    )


def cancel_outcome_text(estimate: Estimate) -> tuple[str, bool]:
    """(text, complete) after a cancelled index run, from a dry run of the same run (which
    counts what is still to do): a cancel that came after the last tile was written left a
    complete index, and says so."""
    todo = estimate.tiles if estimate.new_tiles is None else estimate.new_tiles
    if todo == 0:
        text = tr(
            "Indexing finished before the cancel took effect: every file is indexed, the index "
            "is complete and is now chosen in the search panel."
        )
        return text, True
    text = tr(
        "Indexing cancelled: what was indexed is kept and searchable; {todo} tiles of {files} "
        "files are still to do. Index the folder again to finish."
    )
    return text.format(todo=f"{todo:,}", files=f"{estimate.files:,}"), False
