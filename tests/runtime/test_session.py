"""The search session (cach_qgis/session.py) without QGIS: plain Python, no Qt.

The module is loaded as QGIS loads it, inside the plugin package (here ``cach_plugin``: the
repository root), so that its relative import reaches the protocol.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "cach_plugin"


def _plugin_module(name: str) -> ModuleType:
    """``PACKAGE.name``, with the repository root loaded as the package ``PACKAGE``."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{name}")


session = _plugin_module("cach_qgis.session")
protocol = _plugin_module("model_runtime.protocol")
Note, Query, SearchSession = session.Note, session.Query, session.SearchSession


def hit(tile_id: int, rank: int = 1, confidence: float | None = None):
    return protocol.Hit(
        rank=rank,
        tile_id=tile_id,
        source="/a.tif",
        window=(0, 0, 8, 8),
        crs=None,
        footprint=None,
        footprint_src=None,
        hamming=3,
        score=0.5,
        confidence=confidence,
    )


def result(*hits, weak: bool = False, outdated: bool = False):
    index = {"outdated_model": True} if outdated else {}
    return protocol.SearchResult(results=list(hits), index=index, weak_match=weak)


def test_importing_the_session_imports_no_qt_and_no_qgis():
    code = (
        "import sys; sys.path.insert(0, 'tests/runtime'); import test_session; "
        "loaded = {m.split('.')[0] for m in sys.modules}; "
        "bad = loaded & {'qgis', 'PyQt5', 'PyQt6', 'sip', 'numpy', 'torch'}; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_session_module_imports_only_the_standard_library_and_the_protocol():
    import ast

    tree = ast.parse((ROOT / "cach_qgis" / "session.py").read_text(encoding="utf-8"))
    relative, absolute = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            relative.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.ImportFrom):
            absolute.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            absolute |= {a.name.split(".")[0] for a in node.names}
    assert relative == {"..model_runtime.protocol"}
    assert absolute <= set(sys.stdlib_module_names) | {"__future__"}, absolute


# --- queries and request parameters -------------------------------------------------------------
def test_a_query_is_words_a_tile_an_image_a_saved_search_or_the_marks():
    assert Query(text="fields").kind == "text" and Query(text="fields").key == "text:fields"
    assert Query(tile=7).kind == "tile" and Query(tile=7).key == "tile:7"
    assert Query(tile=0).kind == "tile"  # tile 0 is a tile
    assert Query(image="/x.png").kind == "image" and Query(image="/x.png").key == "image:/x.png"
    assert Query(saved="/s.json").kind == "saved" and Query(saved="/s.json").key == "saved:/s.json"
    assert Query().kind == "marks" and Query().params() == {}


def test_the_search_request_carries_the_index_k_marks_extent_and_save():
    s = SearchSession(" /idx ", k=12)
    assert s.index == "/idx"
    s.mark(hit(5), True)
    s.mark(hit(9), False)
    req = s.search_request(Query(text="a harbour"), ([0.0, 1.0, 2.0, 3.0], "EPSG:3857"), "/s.json")
    assert isinstance(req, protocol.SearchRequest)
    assert req.to_params() == {
        "index": "/idx",
        "k": 12,
        "text": "a harbour",
        "positive": [5],
        "negative": [9],
        "save": "/s.json",
        "bbox": [0.0, 1.0, 2.0, 3.0],
        "bbox_crs": "EPSG:3857",
    }
    assert protocol.SearchRequest.from_params(req.to_params()) == req  # valid on the wire
    # a saved search carries its own marks and nothing else of the session's
    saved = s.search_request(Query(saved="/s.json"))
    assert saved.to_params() == {"index": "/idx", "k": 12, "saved": "/s.json"}
    assert s.search_request(Query(tile=3)).tile == 3
    s.k = protocol.DEFAULT_K  # defaults stay off the wire
    assert s.search_request(Query(text="x")).to_params() == {
        "index": "/idx",
        "text": "x",
        "positive": [5],
        "negative": [9],
    }


def test_what_blocks_a_search_is_said_as_a_code():
    s = SearchSession()
    assert s.blocked(Query()) is Note.NO_QUERY  # no words and no tile marked right
    assert s.blocked(Query(text="x")) is Note.NO_INDEX
    assert s.blocked(Query(text="x"), runtime_down=True) is Note.RUNTIME_DOWN
    s.set_index("/idx")
    assert s.blocked(Query(text="x")) is None and s.blocked(Query(tile=1)) is None
    s.mark(hit(4), False)
    assert s.blocked(Query()) is Note.NO_QUERY  # only wrong marks: nothing to look for
    s.mark(hit(5), True)
    assert s.blocked(Query()) is None
    assert Note.WEAK_MATCH == "weak_match"  # codes compare as their strings


# --- the latest query wins ----------------------------------------------------------------------
def test_only_the_current_requests_answer_is_kept():
    s = SearchSession("/idx")
    s.begin(1, Query(text="old"))
    s.begin(2, Query(text="new"))  # the newer search supersedes request 1
    assert not s.is_current(1) and s.is_current(2) and s.query.text == "new"
    assert s.answered(1, result(hit(1))) is None and s.result is None  # stale: ignored
    assert s.failed(1, cancelled=True) is None
    assert s.answered(2, result(hit(2))) == [] and s.result.results[0].tile_id == 2
    assert s.current is None and not s.is_current(2) and not s.is_current(None)
    assert s.answered(2, result(hit(3))) is None  # answered once


def test_a_failure_clears_the_result_and_a_cancel_keeps_it():
    s = SearchSession("/idx")
    s.begin(1, Query(text="a"))
    s.answered(1, result(hit(1)))
    s.begin(2, Query(text="b"))
    assert s.failed(2, cancelled=True) is Note.CANCELLED and s.result is not None
    s.begin(3, Query(text="c"))
    assert s.failed(3, cancelled=False) is Note.FAILED and s.result is None


def test_a_result_by_another_route_supersedes_the_request_in_flight():
    s = SearchSession("/idx")
    s.begin(1, Query(text="a"))
    s.show(result(hit(8)))  # e.g. the similar tiles of a tile clicked on the map
    assert s.answered(1, result(hit(1))) is None and s.result.results[0].tile_id == 8


def test_notes_on_a_result():
    s = SearchSession("/idx")
    assert s.show(result()) == [Note.NO_RESULTS]
    assert s.show(result(hit(1), weak=True)) == [Note.WEAK_MATCH]
    assert s.show(result(weak=True)) == [Note.NO_RESULTS]  # no tiles: nothing matches weakly
    assert s.show(result(hit(1), outdated=True)) == [Note.OUTDATED_INDEX]


def test_confidence_never_rises_as_rank_falls():
    s = SearchSession("/idx")
    s.show(result(hit(2, rank=2, confidence=0.9), hit(1, rank=1, confidence=0.6), hit(3, 3)))
    assert [(h.rank, h.confidence) for h in s.result.results] == [(1, 0.6), (2, 0.6), (3, None)]


# --- the index ---------------------------------------------------------------------------------
def test_another_index_drops_its_result_search_in_flight_and_marks():
    s = SearchSession("/a")
    s.begin(1, Query(text="x"))
    s.answered(1, result(hit(1)))
    s.mark(hit(1), True)
    assert s.result_index == "/a" and s.marks_index == "/a"
    assert s.set_index("/a ") == []  # the same index: nothing changes
    assert s.set_index("/b") == [Note.INDEX_CHANGED, Note.MARKS_CLEARED]
    assert s.result is None and not s.marks
    s.begin(2, Query(text="y"))
    assert s.set_index("/c") == [Note.INDEX_CHANGED]  # its answer would be another index's
    assert s.answered(2, result(hit(2))) is None


def test_a_result_belongs_to_the_index_its_request_searched():
    s = SearchSession("/a")
    s.begin(1, Query(text="x"))
    s.index = "/b"  # changed without set_index: the answer still says where it came from
    s.answered(1, result(hit(1)))
    assert s.result_index == "/a"


# --- marks ------------------------------------------------------------------------------------
def test_marks_params_undo_and_clear():
    marks = session.Marks()
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


def test_marks_belong_to_the_index_of_the_result_they_were_made_on():
    s = SearchSession("/a")
    s.show(result(hit(1)))
    s.index = "/b"  # typed, not yet searched: the marked tile is one of /a's
    s.mark(hit(1), True)
    assert s.marks_index == "/a" and s.marks.hits(True)[1].tile_id == 1
    fresh = SearchSession("/c")  # nothing shown: the chosen index
    fresh.mark(hit(2), False)
    assert fresh.marks_index == "/c"


# --- pages ---------------------------------------------------------------------------------------
def page(s, request_id: int, request, *tile_ids: int):
    """Send ``request`` as ``request_id`` (a text query, or a page of the shown query) and
    answer it with the tiles ``tile_ids``, ranked from the request's offset."""
    query = s.page.query if request.offset else Query(text=request.text)
    s.begin(request_id, query, request)
    hits = [hit(t, rank=request.offset + i + 1) for i, t in enumerate(tile_ids)]
    return s.answered(request_id, result(*hits))


def test_pages_turn_by_k_and_never_before_the_first():
    s = SearchSession("/idx", k=3)
    query = Query(text="fields")
    first = s.search_request(query)
    assert first.offset == 0 and "offset" not in first.to_params()  # a new query: page 1
    s.begin(1, query, first)
    s.answered(1, result(hit(1, 1), hit(2, 2), hit(3, 3)))
    assert not s.has_previous_page() and s.has_next_page()
    assert s.page_request(-1) is None and s.shown_ranks() is None
    second = s.page_request(1)
    assert second.offset == 3 and second.to_params()["offset"] == 3
    assert protocol.SearchRequest.from_params(second.to_params()) == second  # valid on the wire
    assert s.page_request(2).offset == 6
    page(s, 2, second, 4, 5, 6)
    assert s.has_previous_page() and s.shown_ranks() == (4, 6)
    assert s.page_request(-1).offset == 0 and s.page_request(-5).offset == 0
    page(s, 3, s.page_request(1), 7, 8)  # the last page: fewer than k tiles
    assert s.shown_ranks() == (7, 8) and not s.has_next_page() and s.page_request(1) is None
    assert s.page_request(-1).offset == 3


def test_a_page_repeats_the_query_marks_extent_and_k_of_the_shown_result():
    s = SearchSession("/idx", k=2)
    s.mark(hit(5), True)
    s.mark(hit(9), False)
    query = Query(text="a harbour")
    first = s.search_request(query, ([0.0, 1.0, 2.0, 3.0], "EPSG:3857"), "/s.json")
    page(s, 1, first, 1, 2)
    s.mark(hit(2), True)  # marks made on a page are kept; the pages stay the shown query's
    s.k = 7
    nxt = s.page_request(1)
    assert nxt == protocol.SearchRequest(
        index="/idx",
        text="a harbour",
        positive=(5,),
        negative=(9,),
        k=2,
        offset=2,
        bbox=(0.0, 1.0, 2.0, 3.0),
        bbox_crs="EPSG:3857",
    )  # the refined search is saved once, by the first page
    page(s, 2, nxt, 3, 4)
    assert s.page.query == query and s.marks.positive() == [2, 5]
    for request_id, kind in enumerate((Query(tile=4), Query(image="/x"), Query(saved="/s")), 3):
        s.begin(request_id, kind, s.search_request(kind))
        s.answered(request_id, result(*[hit(t, t) for t in range(1, 8)]))
        assert s.page_request(1) == replace(s.search_request(kind), offset=7)


def test_a_new_query_starts_again_at_the_first_page():
    s = SearchSession("/idx", k=2)
    page(s, 1, s.search_request(Query(text="a")), 1, 2)
    page(s, 2, s.page_request(1), 3, 4)
    assert s.has_previous_page()
    refined = s.search_request(Query(text="a"))  # Refine: the same words, a new query
    assert refined.offset == 0
    page(s, 3, refined, 5, 6)
    assert not s.has_previous_page() and s.page.request.offset == 0
    s.show(result(hit(8)))  # a result by another route (the map tool) has no pages
    assert s.page is None and not s.has_next_page() and s.page_request(1) is None


def test_a_stale_page_answer_is_ignored():
    s = SearchSession("/idx", k=2)
    page(s, 1, s.search_request(Query(text="a")), 1, 2)
    s.begin(2, s.page.query, s.page_request(1))  # page 2 asked for ...
    s.begin(3, Query(text="b"), s.search_request(Query(text="b")))  # ... then a new query
    assert s.answered(2, result(hit(3, 3), hit(4, 4))) is None
    assert [h.tile_id for h in s.result.results] == [1, 2] and s.page.query.text == "a"
    assert s.answered(3, result(hit(7), hit(8))) == [] and s.page.query.text == "b"
    # a page turned twice: only the latest page request is shown
    s.begin(4, s.page.query, s.page_request(1))
    s.begin(5, s.page.query, s.page_request(1))
    assert s.answered(4, result(hit(9, 3))) is None and s.page.request.offset == 0
    page(s, 5, s.page_request(1), 10, 11)
    assert s.shown_ranks() == (3, 4)


def test_a_failed_page_or_another_index_drops_the_pages_and_a_cancel_keeps_them():
    s = SearchSession("/idx", k=2)
    page(s, 1, s.search_request(Query(text="a")), 1, 2)
    s.begin(2, s.page.query, s.page_request(1))
    assert s.failed(2, cancelled=True) is Note.CANCELLED and s.has_next_page()
    s.begin(3, s.page.query, s.page_request(1))
    assert s.failed(3, cancelled=False) is Note.FAILED and s.page is None
    page(s, 4, s.search_request(Query(text="a")), 1, 2)
    s.set_index("/other")
    assert s.page is None and s.page_request(1) is None
