"""The run ledger both executors feed: finished, failed and pending sources, and the summary."""

from __future__ import annotations

from types import SimpleNamespace

from model_runtime.errors import CancelledError
from model_runtime.index.ledger import RunLedger
from model_runtime.index.scan import Scan, Todo
from model_runtime.protocol import Skipped


class _Writer:
    """What the ledger uses of an IndexWriter: drop a failed source, the commit time, roots."""

    def __init__(self) -> None:
        self.dropped: list[str] = []
        self.commit_s = 0.5
        self.store = SimpleNamespace(roots=lambda: ["/data"])

    def drop_source(self, uri: str) -> int:
        self.dropped.append(uri)
        return 3


def _ledger(*statuses: str) -> tuple[RunLedger, _Writer]:
    todo = [Todo(SimpleNamespace(uri=f"/data/{i}.tif"), status)
            for i, status in enumerate(statuses)]
    scan = Scan(todo=todo, unchanged=4, removed=1, skipped=[Skipped("/data/x.tif", "bad")],
                roots_added=["/data"])
    writer = _Writer()
    return RunLedger(scan, writer), writer


def test_a_source_is_finished_when_its_last_unit_is_committed():
    ledger, _ = _ledger("added", "updated")
    ledger.planned("/data/0.tif", 2)
    ledger.planned("/data/1.tif", 1)
    ledger.committed("/data/0.tif")
    assert ledger.finished == 0 and ledger.pending_files() == 2
    ledger.committed("/data/0.tif")
    ledger.committed("/data/1.tif")
    assert ledger.counts == {"added": 1, "updated": 1, "resumed": 0}
    assert ledger.pending_files() == 0 and ledger.left == {}


def test_a_source_with_every_unit_committed_before_is_finished_when_planned():
    ledger, _ = _ledger("resumed")
    ledger.planned("/data/0.tif", 0)
    assert ledger.counts["resumed"] == 1 and ledger.pending_files() == 0


def test_a_failed_source_is_skipped_and_dropped_once():
    ledger, writer = _ledger("added", "added")
    ledger.planned("/data/0.tif", 2)
    why = Skipped("/data/0.tif", "unreadable")
    assert ledger.fail("/data/0.tif", why)
    assert not ledger.fail("/data/0.tif", why)  # a second report of the same file
    ledger.committed("/data/0.tif")  # a unit merged after the failure counts for nothing
    assert writer.dropped == ["/data/0.tif"] and ledger.skipped == [why]
    assert ledger.finished == 0 and ledger.pending_files() == 1


def test_the_cancel_error_says_how_many_files_are_kept():
    ledger, _ = _ledger("added", "added")
    ledger.planned("/data/0.tif", 0)
    err = ledger.cancelled()
    assert isinstance(err, CancelledError) and "1 file(s) were finished" in str(err)


def test_the_summary_adds_the_scan_to_what_the_run_did():
    ledger, _ = _ledger("added", "updated", "resumed", "added")
    for i in range(3):
        ledger.planned(f"/data/{i}.tif", 0)
    ledger.fail("/data/3.tif", Skipped("/data/3.tif", "bad header"))
    ledger.encoded = 42
    summary = ledger.summary(tiles=100, seconds=2.0, timing={"encode_s": 1.0})
    assert (summary.added, summary.updated, summary.unchanged) == (1, 2, 4)
    assert summary.removed == 1 + 3  # the scan's gone files and the failed file's old tiles
    assert [s.path for s in summary.skipped] == ["/data/x.tif", "/data/3.tif"]
    assert (summary.tiles, summary.encoded, summary.seconds) == (100, 42, 2.0)
    assert summary.timing == {"encode_s": 1.0, "commit_s": 0.5}
    assert summary.roots_added == ("/data",) and summary.roots == ("/data",)
