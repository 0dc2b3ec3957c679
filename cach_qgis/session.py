"""The search session, Qt-free: what the analyst is searching, apart from the widgets showing it.

The search panel (``dock.SearchDock``) is a view over one :class:`SearchSession`: the index
searched, the current query (words, a tile, an image or a saved search), the tiles marked right
or wrong, the last result, and which request is current. The latest query wins: once a newer
search is sent, or a result arrives by another route (a click on the map), the answer to an
earlier request is stale and the session ignores it.

The session builds what a search sends (a :class:`SearchRequest`) and says what
happened as short codes (:class:`Note`). The words for those codes live in the views and in
``wording``, which translate them. Standard library and the protocol only, so plain pytest
tests it without QGIS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from ..model_runtime.protocol import DEFAULT_K, Hit, RequestId, SearchRequest, SearchResult


class Note(str, Enum):
    """What the session tells its views; a view words (and translates) each one."""

    NO_QUERY = "no_query"  # no words typed and no tile marked right
    NO_INDEX = "no_index"  # no index chosen
    RUNTIME_DOWN = "runtime_down"  # no index chosen, and the runtime cannot run: fix that first
    SEARCHING = "searching"
    CANCELLED = "cancelled"
    FAILED = "failed"  # the search failed (the error says why); the results were cleared
    INDEX_CHANGED = "index_changed"  # another index was chosen: its results were cleared
    MARKS_CLEARED = "marks_cleared"  # another index was chosen: marks do not carry over
    NO_RESULTS = "no_results"
    WEAK_MATCH = "weak_match"  # the best tiles match the words only weakly
    OUTDATED_INDEX = "outdated_index"  # the index was made with an earlier model
    NO_SELECTION = "no_selection"  # "+"/"−" pressed with no result selected
    NO_RESULT = "no_result"  # nothing to export: no search shown
    NO_MARKS = "no_marks"  # nothing to save: no tile marked


@dataclass(frozen=True)
class Query:
    """What one search looks for: words, a tile, an image file or a saved search. Without
    any of them the marked tiles alone are the query."""

    text: str = ""
    tile: int | None = None
    image: str = ""
    saved: str = ""

    @property
    def kind(self) -> str:
        """``saved``, ``tile``, ``image``, ``text`` or ``marks``."""
        if self.saved:
            return "saved"
        if self.tile is not None:
            return "tile"
        if self.image:
            return "image"
        return "text" if self.text else "marks"

    @property
    def key(self) -> str:
        """The result group's key: the same query reuses its group."""
        if self.kind == "saved":
            return f"saved:{self.saved}"
        if self.kind == "tile":
            return f"tile:{self.tile}"
        if self.kind == "image":
            return f"image:{self.image}"
        return f"text:{self.text}"

    def params(self) -> dict[str, Any]:
        """The search request's query part (only what is set)."""
        out: dict[str, Any] = {}
        if self.text:
            out["text"] = self.text
        if self.tile is not None:
            out["tile"] = int(self.tile)
        if self.image:
            out["image"] = self.image
        if self.saved:
            out["saved"] = self.saved
        return out


@dataclass(frozen=True)
class Mark:
    """One marked tile: the hit it was marked on, and whether it is right."""

    hit: Any  # protocol.Hit (tile_id, rank, name, ...)
    right: bool

    @property
    def tile_id(self) -> int:
        return int(self.hit.tile_id)


class Marks:
    """The tiles marked right (more like this) or wrong (less like this), in the order they
    were made. A tile has at most one mark: marking it again replaces the earlier mark and
    makes it the latest. Refine sends them as the search's ``positive``/``negative``."""

    def __init__(self) -> None:
        self._marks: dict[int, Mark] = {}

    def mark(self, hit: Any, right: bool) -> Mark:
        """Mark ``hit`` right or wrong (replacing any earlier mark on the same tile)."""
        made = Mark(hit, bool(right))
        self._marks.pop(made.tile_id, None)
        self._marks[made.tile_id] = made
        return made

    def undo(self, tile_id: int | None = None) -> Mark | None:
        """Forget the mark on ``tile_id`` (default: the latest mark); None when there is none."""
        if tile_id is None:
            if not self._marks:
                return None
            tile_id = next(reversed(self._marks))
        return self._marks.pop(int(tile_id), None)

    def clear(self) -> int:
        """Forget every mark; returns how many there were."""
        count = len(self._marks)
        self._marks.clear()
        return count

    def state(self, tile_id: int) -> bool | None:
        """True (right), False (wrong) or None (not marked)."""
        mark = self._marks.get(int(tile_id))
        return None if mark is None else mark.right

    def items(self) -> list[Mark]:
        """The marks, oldest first."""
        return list(self._marks.values())

    def hits(self, right: bool) -> dict[int, Any]:
        """The marked hits by tile id: the right ones (``right``) or the wrong ones."""
        return {m.tile_id: m.hit for m in self._marks.values() if m.right == right}

    def positive(self) -> list[int]:
        return sorted(self.hits(True))

    def negative(self) -> list[int]:
        return sorted(self.hits(False))

    def params(self) -> dict[str, list[int]]:
        """The search request's ``positive``/``negative`` (only the non-empty ones)."""
        out: dict[str, list[int]] = {}
        if self.positive():
            out["positive"] = self.positive()
        if self.negative():
            out["negative"] = self.negative()
        return out

    def __len__(self) -> int:
        return len(self._marks)

    def __contains__(self, tile_id: object) -> bool:
        return tile_id in self._marks


def monotone_confidence(hits: list[Hit]) -> list[Hit]:
    """Confidence never rises as rank falls: a lower-ranked tile shows at most the confidence
    of the tiles above it (the list, the layer and the export say the same)."""
    out, cap = [], None
    for hit in sorted(hits, key=lambda h: h.rank):
        if hit.confidence is not None:
            cap = hit.confidence if cap is None else min(cap, hit.confidence)
            hit = replace(hit, confidence=cap)
        out.append(hit)
    return out


Bbox = tuple[list[float], str]  # [minx, miny, maxx, maxy] and the CRS id they are in


@dataclass(frozen=True)
class Page:
    """A page of results: the query and the request that asked for it (its ``offset``: how
    many of the best tiles come before the page, ``k``: the page's size)."""

    query: Query
    request: SearchRequest

    def turned(self, step: int) -> SearchRequest:
        """The same request ``step`` pages on (back when negative), never before the first
        page; nothing is saved again."""
        offset = max(0, self.request.offset + step * self.request.k)
        return replace(self.request, offset=offset, save=None)


class SearchSession:
    """One analyst's searching: index, query, marks, last result, its page and the current
    request."""

    def __init__(self, index: str = "", k: int = DEFAULT_K) -> None:
        self.index = index.strip()
        self.k = int(k)
        self.query: Query | None = None  # the latest query sent
        self.marks = Marks()
        self.marks_index = ""  # the index the marked tile ids belong to
        self.result: SearchResult | None = None
        self.result_index = ""  # the index the shown result came from
        self.current: RequestId = None  # the request whose answer will be shown
        self._current_index = ""  # the index the current request searches
        self._current_page: Page | None = None  # what the current request asks for
        self.page: Page | None = None  # the shown result's page; None: not from a search

    # --- index -----------------------------------------------------------------------------------
    def set_index(self, path: str) -> list[Note]:
        """Choose the index to search. A result, a search in flight and marks of another index
        are no longer current: they are dropped (tile ids are an index's own)."""
        self.index = path.strip()
        notes = []
        stale_search = self.current is not None and self._current_index != self.index
        if stale_search or (self.result is not None and self.result_index != self.index):
            self.current = None
            self.clear_result()
            notes.append(Note.INDEX_CHANGED)
        if self.marks and self.marks_index != self.index:
            self.marks.clear()
            notes.append(Note.MARKS_CLEARED)
        return notes

    # --- searching -------------------------------------------------------------------------------
    def blocked(self, query: Query, runtime_down: bool = False) -> Note | None:
        """Why ``query`` cannot be sent now; None when it can. ``runtime_down``: the runtime
        cannot run, which is the first thing to fix when no index is chosen either."""
        if query.kind == "marks" and not self.marks.positive():
            return Note.NO_QUERY
        if not self.index:
            return Note.RUNTIME_DOWN if runtime_down else Note.NO_INDEX
        return None

    def search_request(
        self, query: Query, bbox: Bbox | None = None, save: str = ""
    ) -> SearchRequest:
        """The ``search`` request for ``query`` on the chosen index: the marks refine it (a
        saved search carries its own), ``bbox`` limits it to an extent, ``save`` keeps the
        refined search in that file."""
        marks = query.kind != "saved"
        area = {"bbox": tuple(bbox[0]), "bbox_crs": bbox[1]} if bbox is not None else {}
        return SearchRequest(
            index=self.index,
            k=self.k,
            positive=tuple(self.marks.positive()) if marks else (),
            negative=tuple(self.marks.negative()) if marks else (),
            save=save or None,
            **query.params(),
            **area,
        )

    def begin(
        self, request_id: RequestId, query: Query, request: SearchRequest | None = None
    ) -> None:
        """``request_id`` now carries the current query (sent as ``request``); any earlier
        request is stale."""
        self.current, self.query, self._current_index = request_id, query, self.index
        self._current_page = Page(query, request) if request is not None else None

    def is_current(self, request_id: RequestId) -> bool:
        return request_id is not None and request_id == self.current

    def answered(self, request_id: RequestId, result: SearchResult) -> list[Note] | None:
        """Keep ``result`` if it answers the current request (notes on it); None: stale."""
        if not self.is_current(request_id):
            return None
        page = self._current_page
        notes = self.show(result, self._current_index)
        self.page = page
        return notes

    def failed(self, request_id: RequestId, cancelled: bool) -> Note | None:
        """The current request failed or was cancelled; None for a stale request. A failure
        clears the result, so that its message never sits beside another query's tiles."""
        if not self.is_current(request_id):
            return None
        self.current = None
        if cancelled:
            return Note.CANCELLED
        self.clear_result()
        return Note.FAILED

    def show(self, result: SearchResult, index: str | None = None) -> list[Note]:
        """Make ``result`` the one shown (a newer result: no request is current any more);
        returns the notes it calls for."""
        self.current, self.page = None, None
        self.result = replace(result, results=monotone_confidence(result.results))
        self.result_index = self.index if index is None else index
        notes = []
        if not result.results:
            notes.append(Note.NO_RESULTS)
        elif result.weak_match:
            notes.append(Note.WEAK_MATCH)
        if result.index.get("outdated_model"):
            notes.append(Note.OUTDATED_INDEX)
        return notes

    def clear_result(self) -> None:
        self.result, self.result_index, self.page = None, "", None

    # --- pages -----------------------------------------------------------------------------------
    def has_previous_page(self) -> bool:
        """The shown result is a page after the first."""
        return self.page is not None and self.page.request.offset > 0

    def has_next_page(self) -> bool:
        """The shown page is full (``k`` tiles), so more tiles may follow."""
        if self.page is None or self.result is None:
            return False
        return len(self.result.results) >= self.page.request.k

    def page_request(self, step: int) -> SearchRequest | None:
        """The request for the page ``step`` pages after the shown one (before it when
        negative): the same query, marks, extent and ``k`` at an offset ``step * k`` away.
        None when there is no such page."""
        if step > 0 and self.has_next_page() or step < 0 and self.has_previous_page():
            return self.page.turned(step)
        return None

    def shown_ranks(self) -> tuple[int, int] | None:
        """(first, last) overall rank of the shown page when it is not the first page."""
        if not self.has_previous_page() or not self.result.results:
            return None
        first = self.page.request.offset + 1
        return first, first + len(self.result.results) - 1

    # --- marks -----------------------------------------------------------------------------------
    def mark(self, hit: Hit, right: bool) -> Mark:
        """Mark a tile right (more like this) or wrong (less like this); Refine learns from it."""
        if not self.marks:
            self.marks_index = self.result_index or self.index
        return self.marks.mark(hit, right)
