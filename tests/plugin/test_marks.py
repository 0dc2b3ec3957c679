"""The analyst's marks (cach_qgis/marks.py): plain Python, no QGIS objects needed."""

from __future__ import annotations

from types import SimpleNamespace

from cach_for_qgis.cach_qgis import wording
from cach_for_qgis.cach_qgis.marks import Marks


def hit(tile_id: int, rank: int = 1) -> SimpleNamespace:
    return SimpleNamespace(tile_id=tile_id, rank=rank, name=f"t{tile_id}")


def test_marks_params_undo_and_clear():
    marks = Marks()
    assert not marks and marks.params() == {} and marks.undo() is None
    marks.mark(hit(7), True)
    marks.mark(hit(3), True)
    marks.mark(hit(9), False)
    assert marks.params() == {"positive": [3, 7], "negative": [9]}
    assert [m.tile_id for m in marks.items()] == [7, 3, 9]
    # marking a tile again replaces its mark and makes it the latest
    marks.mark(hit(7), False)
    assert marks.params() == {"positive": [3], "negative": [7, 9]}
    assert marks.state(7) is False and marks.state(3) is True and marks.state(4) is None
    assert [m.tile_id for m in marks.items()] == [3, 9, 7]
    # undo: the latest by default, or a given tile
    assert marks.undo().tile_id == 7
    assert marks.undo(3).right is True
    assert marks.undo(3) is None
    assert marks.params() == {"negative": [9]} and 9 in marks and len(marks) == 1
    assert marks.clear() == 1 and not marks and marks.params() == {}


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
