"""Collapse and pages (``model_runtime/index/collapse.py``): no source over half a page while
others have candidates, duplicates kept once, and pages that follow on without repeating."""

from __future__ import annotations

from model_runtime.index.collapse import collapse_hits
from model_runtime.index.rows import TileRow


def _cand(tile_id: int, source: str, score: float, col: int | None = None):
    window = (256 * (tile_id if col is None else col), 0, 256, 256)
    row = TileRow(tile_id, source, window, 1, None, 1.0, None, None)
    return row, 0, score, bytes([tile_id])


# 8 tiles of source a (best scores), then 4 of b and 4 of c
CANDIDATES = ([_cand(i, "a", 1.0 - i / 100) for i in range(8)]
              + [_cand(10 + i, "b", 0.8 - i / 100) for i in range(4)]
              + [_cand(20 + i, "c", 0.7 - i / 100) for i in range(4)])


def _ids(cands) -> list[int]:
    return [c[0].id for c in cands]


def test_one_page_spreads_sources():
    page = _ids(collapse_hits(CANDIDATES, 4))
    assert page == [0, 1, 10, 11]  # a may fill only half of 4


def test_pages_follow_on_without_repeating():
    page1 = _ids(collapse_hits(CANDIDATES, 4))
    two_pages = _ids(collapse_hits(CANDIDATES, 8, page=4))
    assert two_pages[:4] == page1
    assert not set(two_pages[4:]) & set(page1)
    assert len(set(two_pages)) == 8


def test_one_long_page_differs_from_two_pages():
    """Without ``page`` the rule applies to all 8 at once (half of 8 for source a)."""
    assert _ids(collapse_hits(CANDIDATES, 8)) != _ids(collapse_hits(CANDIDATES, 8, page=4))


def test_a_later_page_drops_duplicates_of_an_earlier_one():
    copy = _cand(99, "a", 0.5, col=0)  # the window of tile 0 again, lower score
    ranked = _ids(collapse_hits([*CANDIDATES, copy], 16, page=4))
    assert 0 in ranked and 99 not in ranked


def test_leftover_slots_fill_from_the_crowded_source():
    only_a = [_cand(i, "a", 1.0 - i / 100) for i in range(6)]
    assert _ids(collapse_hits(only_a, 6, page=3)) == [0, 1, 2, 3, 4, 5]
