"""How the analyst's marks are worded: plain Python, no QGIS objects needed (the marks
themselves: tests/runtime/test_session.py)."""

from __future__ import annotations

from types import SimpleNamespace

from cach_for_qgis.cach_qgis import wording


def hit(tile_id: int, rank: int = 1) -> SimpleNamespace:
    return SimpleNamespace(tile_id=tile_id, rank=rank, name=f"t{tile_id}")


def test_mark_rows_and_summary_say_right_or_wrong():
    assert "right" in wording.mark_text(hit(5, rank=2), True)
    row = wording.mark_text(hit(5, rank=2), False)
    assert "wrong" in row and "#2" in row and "tile 5" in row
    assert "#0" not in wording.mark_text(hit(6, rank=0), True)  # marked on the map: no rank
    assert "2 right, 1 wrong" in wording.marks_summary(2, 1)
    assert "none" in wording.marks_summary(0, 0)


def test_saved_search_errors_say_what_to_do_with_the_file():
    from cach_for_qgis.model_runtime.protocol import ErrorInfo

    bad = wording.error_text(ErrorInfo("data", "bad json", "saved_search_invalid"))
    assert "saved CACH search" in bad and "Save refined search" in bad
    other = wording.error_text(ErrorInfo("model_mismatch", "backbone", "saved_search_mismatch"))
    assert "saved search" in other and "Re-index" not in other  # not the index's problem
