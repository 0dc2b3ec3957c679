"""Collapse: one result per place, results spread across sources, and pages that follow on.

A ranked list of candidates ``(TileRow, hamming, score, code)`` becomes the hits a person sees:
duplicates (overlapping windows of one source, copies of a place under the same code) keep their
best tile, and no source fills more than half of a page while other sources have candidates. A
paged search (``offset``) ranks page after page with the rule applied to each page, so page n of
k tiles is the same whatever k x n tiles were asked for, and no tile is on two pages."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from model_runtime.index.store import TileRow, bbox_of

#: overlapping tiles of one source with window IoU above this are collapsed into the best one
COLLAPSE_IOU = 0.5

Candidate = tuple[TileRow, int, float, bytes]


def window_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two (col, row, width, height) windows."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _box_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    if a is None or b is None:
        return 0.0
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a, b
    w, h = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter)


def is_duplicate(a: TileRow, a_code: bytes, b: TileRow, b_code: bytes) -> bool:
    """Same source and (window IoU > 0.5 or identical code); or another source holding the
    same place with the same code (a copy of the raster, e.g. recompressed)."""
    if a.source == b.source:
        return a_code == b_code or window_iou(a.window, b.window) > COLLAPSE_IOU
    box_a = a.bbox or bbox_of(a.footprint)
    box_b = b.bbox or bbox_of(b.footprint)
    return a_code == b_code and _box_iou(box_a, box_b) > COLLAPSE_IOU


def same_place(near: TileRow, near_code: bytes, row: TileRow, code: bytes) -> bool:
    """``row`` shows the place of ``near`` again: a duplicate (``is_duplicate``), or a tile of
    the same source whose window shares pixels with it (an overlapping neighbour, a tile of
    another scale). A tile query drops these: the analyst asked for other places."""
    if is_duplicate(near, near_code, row, code):
        return True
    return row.source == near.source and window_iou(row.window, near.window) > 0.0


class _Seen:
    """Tiles kept so far, indexed so that a duplicate check (``is_duplicate``) looks only at the
    tiles that could match: those with the same code, and the windows of the same source near
    it (a grid per source; windows that share pixels lie within ``reach`` cells of each other)."""

    def __init__(self) -> None:
        self.by_code: dict[bytes, list[tuple[TileRow, bytes]]] = defaultdict(list)
        self.cells: dict[tuple, list[tuple[TileRow, bytes]]] = defaultdict(list)
        self.cell: dict[str, int] = {}  # source -> grid cell size (its first window's side)
        self.side: dict[str, int] = {}  # source -> its largest window side so far

    def add(self, row: TileRow, code: bytes) -> None:
        self.by_code[code].append((row, code))
        col, top, width, height = row.window
        size = self.cell.setdefault(row.source, max(1, int(width), int(height)))
        self.side[row.source] = max(self.side.get(row.source, 0), int(width), int(height))
        self.cells[(row.source, col // size, top // size)].append((row, code))

    def duplicates(self, row: TileRow, code: bytes) -> bool:
        """True when a tile held here is a duplicate of ``row``."""
        if any(is_duplicate(o, oc, row, code) for o, oc in self.by_code.get(code, ())):
            return True
        size = self.cell.get(row.source)
        if size is None:
            return False
        col, top, width, height = row.window
        reach = math.ceil(max(self.side[row.source], int(width), int(height)) / size)
        cx, cy = col // size, top // size
        return any(is_duplicate(o, oc, row, code)
                   for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
                   for o, oc in self.cells.get((row.source, cx + dx, cy + dy), ()))


def collapse_hits(candidates: list[Candidate], k: int, page: int | None = None
                  ) -> list[Candidate]:
    """The first ``k`` hits of ``candidates`` (best first) made page by page, ``page`` tiles a
    page (default: one page of ``k``): each page keeps the best of duplicates (of its own tiles
    and of earlier pages') and spreads its tiles across sources (``_collapse_page``)."""
    page = max(1, int(page or k))
    ranking: list[Candidate] = []
    earlier = _Seen()
    remaining = list(candidates)
    while len(ranking) < k and remaining:
        chosen = _collapse_page(remaining, min(page, k - len(ranking)), earlier)
        if not chosen:
            break
        ranking += chosen
        for row, _, _, code in chosen:
            earlier.add(row, code)
        taken = {id(c) for c in chosen}
        remaining = [c for c in remaining if id(c) not in taken]
    return ranking


def _collapse_page(candidates: list[Candidate], k: int, earlier: _Seen) -> list[Candidate]:
    """One page of ``k``: no duplicate of a tile kept (here or on an ``earlier`` page), no
    source over half of ``k`` while other sources still have candidates; leftover slots are
    then filled in score order. The scan stops once the page is full, or once it holds enough
    tiles and no source that may still add one has candidates left (``_Open``)."""
    kept: list[Candidate] = []
    deferred: list[Candidate] = []
    here = _Seen()
    cap = max(1, math.ceil(k / 2))
    open_sources = _Open(candidates, cap)
    for cand in candidates:
        row, _, _, code = cand
        open_sources.scanned(row.source)
        if earlier.duplicates(row, code) or here.duplicates(row, code):
            continue
        here.add(row, code)
        if open_sources.full(row.source):
            deferred.append(cand)
        else:
            open_sources.took(row.source)
            kept.append(cand)
        if len(kept) >= k or (len(kept) + len(deferred) >= k and not open_sources.any()):
            break
    if len(kept) < k:
        kept += deferred[: k - len(kept)]
    kept.sort(key=lambda c: (-c[2], c[1], c[0].id))
    return kept[:k]


class _Open:
    """Per source: tiles kept on the page (at most ``cap``) and candidates not yet scanned; a
    source is open while it has both room and candidates. Counted, so ``any`` is O(1)."""

    def __init__(self, candidates: list[Candidate], cap: int) -> None:
        self.cap = cap
        self.unscanned = Counter(c[0].source for c in candidates)
        self.kept: Counter = Counter()
        self.open = len(self.unscanned)

    def scanned(self, source: str) -> None:
        self.unscanned[source] -= 1
        if self.unscanned[source] == 0 and self.kept[source] < self.cap:
            self.open -= 1

    def full(self, source: str) -> bool:
        return self.kept[source] >= self.cap

    def took(self, source: str) -> None:
        self.kept[source] += 1
        if self.kept[source] == self.cap and self.unscanned[source] > 0:
            self.open -= 1

    def any(self) -> bool:
        return self.open > 0
