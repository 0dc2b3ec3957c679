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


def _reference(candidates, k):
    """The rule written plainly (every pair compared): what the indexed version must equal."""
    from model_runtime.index.collapse import is_duplicate

    kept, deferred, per_source = [], [], {}
    cap = max(1, -(-k // 2))
    for cand in candidates:
        row, _, _, code = cand
        if any(is_duplicate(o, oc, row, code) for o, _, _, oc in kept + deferred):
            continue
        if per_source.get(row.source, 0) >= cap:
            deferred.append(cand)
            continue
        per_source[row.source] = per_source.get(row.source, 0) + 1
        kept.append(cand)
        if len(kept) >= k:
            break
    kept += deferred[: max(0, k - len(kept))]
    kept.sort(key=lambda c: (-c[2], c[1], c[0].id))
    return kept[:k]


def test_the_indexed_duplicate_check_equals_comparing_every_pair():
    """Windows of several sizes on a grid finer than the tiles (overlaps of every amount),
    repeated codes and copies in other sources: the grid index misses no duplicate."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        sources = [f"s{j}" for j in range(rng.randrange(1, 4))]
        cands = []
        for i in range(rng.randrange(1, 150)):
            side = rng.choice([128, 128, 256, 71])
            col, top = rng.randrange(0, 12) * 48, rng.randrange(0, 12) * 48
            box = (col / 1e3, top / 1e3, (col + side) / 1e3, (top + side) / 1e3)
            row = TileRow(i, rng.choice(sources), (col, top, side, side), 1, None, 1.0, None,
                          None, box if rng.random() < 0.5 else None)
            cands.append((row, 0, 1 - i / 1000, bytes([rng.randrange(30)])))
        k = rng.randrange(1, 40)
        assert _ids(collapse_hits(cands, k)) == _ids(_reference(cands, k))


def test_deep_pages_of_one_large_raster_compare_only_nearby_windows(monkeypatch):
    """One source, 4,112 distinct tiles, page 51 of 20 (offset 1,000, the deepest allowed): the
    duplicate check compares a tile with the windows near it only, so the comparisons grow with
    the tiles, not with their square."""
    from model_runtime.index import collapse

    calls = []
    real = collapse.is_duplicate
    monkeypatch.setattr(collapse, "is_duplicate", lambda *a: calls.append(1) or real(*a))
    cands = [(TileRow(i, "one.tif", ((i % 60) * 256, (i // 60) * 256, 256, 256), 1, None, 1.0,
                      None, None), 0, 1 - i / 1e4, i.to_bytes(4, "little")) for i in range(4112)]
    ranked = collapse_hits(cands, 1020, page=20)
    assert len(ranked) == 1020 and len({c[0].id for c in ranked}) == 1020
    assert len(calls) < 50_000, len(calls)  # 3,851 here; every pair: over 500,000
