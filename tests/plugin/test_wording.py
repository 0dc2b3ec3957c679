"""The plugin's words: every error code is worded for QGIS users, with what to do in QGIS."""

from __future__ import annotations

import pytest
from cach_for_qgis.cach_qgis import wording
from cach_for_qgis.model_runtime.protocol import (
    ERROR_CODES,
    ErrorInfo,
    Estimate,
    Hit,
    IndexSummary,
    Skipped,
)

#: what a message may point at so that the user knows what to do next, in QGIS
ACTIONS = (
    "CACH ▸",
    "Plugins ▸",
    "View ▸",
    "Project ▸",
    "try again",
    "Run the search again",
    "Click",
    "Choose",
    "Check",
    "Wait",
    "Free some space",
    "Index the source rasters",
    "waits for your go-ahead",
    "Cancelled",
)
CLI_WORDS = ("cach index", "'cach", "cach search", "--", "run 'cach")


@pytest.mark.parametrize("code", sorted(c for c in ERROR_CODES if c != "worker_unavailable"))
def test_every_error_code_is_worded_for_qgis(code):
    kind = ERROR_CODES[code][0]
    runtime_text = "No index at /x: run 'cach index' first."
    text = wording.error_text(ErrorInfo(kind, runtime_text, code))
    assert runtime_text not in text, "the runtime's CLI text must not be shown as the message"
    assert not any(w in text for w in CLI_WORDS), text
    assert any(a.lower() in text.lower() for a in ACTIONS), f"{code}: {text}"
    assert runtime_text in wording.error_details(ErrorInfo(kind, runtime_text, code))


def test_codes_not_in_the_table_fall_back_by_type():
    info = ErrorInfo.from_dict({"type": "index", "code": "some_future_code", "message": "m"})
    assert "Index raster folder" in wording.error_text(info)


def test_worker_unavailable_keeps_the_plugins_own_words():
    info = ErrorInfo(
        "runtime", "Cannot run the CACH runtime '/x': not found.", "worker_unavailable"
    )
    assert wording.error_text(info) == info.message
    assert wording.error_level(info) == wording.CRITICAL


def test_empty_or_all_skipped_runs_are_warnings_naming_why():
    text, level = wording.summary_text(IndexSummary(tiles=0))
    assert level == wording.WARNING and "Nothing was indexed" in text and "no raster" in text
    skipped = tuple(Skipped(f"/d/{n}", "x", "not_a_raster") for n in ("a.txt", "b.txt", "c.txt"))
    text, level = wording.summary_text(IndexSummary(tiles=0, skipped=skipped))
    assert level == wording.WARNING
    assert "3 files skipped: a.txt (not a raster), b.txt (not a raster), c.txt" in text
    text, level = wording.summary_text(IndexSummary(added=2, tiles=40))
    assert level == wording.SUCCESS and "40 tiles" in text


def test_estimate_and_confirmation_name_the_size():
    estimate = Estimate(files=3, tiles=760_000, bytes=3 * 10**9, seconds=7200, new_tiles=700_000)
    text = wording.confirm_text(estimate)
    assert "700,000 new tiles" in text and "2.0 h" in text and "Index anyway" in text


def test_hit_words_show_confidence_and_missing_coordinates():
    hit = Hit(2, 7, "/p/photo.jpg", (0, 0, 256, 256), None, None, None, 9, 0.7, 0.35)
    assert "confidence 35 %" in wording.hit_text(hit)
    assert "not georeferenced" in wording.hit_text(hit)
    assert "estimated chance" in wording.hit_tooltip(hit)
    assert "weak" in wording.weak_match_text("a harbour").lower()


def test_a_confidence_every_hit_shares_is_said_once_not_on_every_row():
    """On imagery where the evidence cannot tell tiles apart every hit reads the calibration's
    prior: the rows show their scores and the status line gives the prior once."""
    def hit(rank, confidence):
        return Hit(rank, rank, "/p/a.tif", (0, 0, 64, 64), None, None, None, 9, 0.7, confidence)

    flat = [hit(1, 0.153), hit(2, 0.153), hit(3, 0.153)]
    shared = wording.shared_confidence(flat)
    assert shared == 0.153
    assert "score 0.70" in wording.hit_text(flat[0], shared=shared)
    assert "confidence" not in wording.hit_text(flat[0], shared=shared)
    status = wording.results_status(3, 0, {"total": 5.0}, "for “x”", shared=shared)
    assert "cannot tell these tiles apart" in status and "about 15 %" in status
    assert wording.shared_confidence([hit(1, 0.6), hit(2, 0.3)]) is None
    assert wording.shared_confidence([hit(1, 0.6)]) is None  # one hit: its own confidence
    assert wording.shared_confidence([hit(1, None), hit(2, None)]) is None
    assert "cannot tell" not in wording.results_status(3, 0, {}, "for “x”")


def test_model_details_stay_out_of_the_status_line():
    model = {"method": "cach", "backbone": "effnetlite0-minilm", "bits": 64, "heads": "h.st"}
    status = wording.results_status(8, 0, {"total": 33.0}, "for “x”")
    assert status == "8 tiles for “x” in 33 ms."
    page2 = wording.results_status(8, 0, {"total": 33.0}, "for “x”", ranks=(9, 16))
    assert page2 == "Results 9–16 for “x” in 33 ms."
    details = wording.model_details(model, {"path": "/i", "tiles": 73})
    assert "64-bit" in details and "73 tiles" in details and "h.st" in details
