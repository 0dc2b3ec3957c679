"""The bookkeeping of one index run, fed by whichever executor runs it (local threads,
``build.py``; Ray, ``ray_executor.py``): which sources finished (added, updated or resumed),
which failed (skipped, their tiles dropped), how many units each still waits for, how many tiles
were encoded, and the :class:`IndexSummary` made from all of it.

An executor tells the ledger three things, in any order across sources: a source was planned
into N units still to commit (:meth:`RunLedger.planned`), a unit of it was committed
(:meth:`RunLedger.committed`), or it failed (:meth:`RunLedger.fail`). A source counts as
finished when its last unit is in (or at once when an earlier run committed them all).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from model_runtime.errors import CancelledError
from model_runtime.protocol import IndexSummary, Skipped

if TYPE_CHECKING:
    from model_runtime.index.scan import Scan
    from model_runtime.index.writer import IndexWriter

LOG = logging.getLogger(__name__)


class RunLedger:
    """What one run over ``scan.todo`` did so far; failed sources are dropped through
    ``writer``."""

    def __init__(self, scan: Scan, writer: IndexWriter) -> None:
        self.scan, self.writer = scan, writer
        self.status = {t.source.uri: t.status for t in scan.todo}
        self.left: dict[str, int] = {}  # source uri -> units not yet committed
        self.failed: set[str] = set()
        self.counts = {"added": 0, "updated": 0, "resumed": 0}
        self.skipped: list[Skipped] = []
        self.dropped = 0  # stored tiles of failed sources, removed
        self.encoded = 0

    @property
    def finished(self) -> int:
        """Sources whose every unit is committed."""
        return sum(self.counts.values())

    def planned(self, uri: str, units: int) -> None:
        """``uri`` has ``units`` units still to commit (0: an earlier run committed them all)."""
        self.left[uri] = units
        if units == 0:
            self._done(uri)

    def committed(self, uri: str) -> None:
        """One unit of ``uri`` is in the store."""
        if uri in self.left:
            self.left[uri] -= 1
            if self.left[uri] == 0:
                self._done(uri)

    def fail(self, uri: str, why: Skipped) -> bool:
        """``uri`` cannot be indexed: skip it and drop its stored tiles. False when it had
        failed already (nothing done)."""
        if uri in self.failed:
            return False
        self.failed.add(uri)
        self.left.pop(uri, None)
        self.skipped.append(why)
        self.dropped += self.writer.drop_source(uri)
        LOG.warning("skipped %s", why.reason)
        return True

    def _done(self, uri: str) -> None:
        self.left.pop(uri, None)
        self.counts[self.status.get(uri, "added")] += 1

    def pending_files(self) -> int:
        """Sources of the run neither finished nor failed (a cancelled run's leftovers)."""
        return max(0, len(self.scan.todo) - self.finished - len(self.failed))

    def cancelled(self) -> CancelledError:
        """The error that stops a cancelled run, saying what it kept."""
        return CancelledError(
            f"Indexing cancelled; {self.finished} file(s) were finished and are searchable. "
            "Index the same folders again to resume.")

    def summary(self, tiles: int, seconds: float, timing: dict[str, float]) -> IndexSummary:
        """What the run did, once the writer's ``finalize`` returned the index's ``tiles``;
        ``timing`` is the executor's own (the writer's commit time is added)."""
        scan, store = self.scan, self.writer.store
        return IndexSummary(
            added=self.counts["added"], updated=self.counts["updated"] + self.counts["resumed"],
            removed=scan.removed + self.dropped, unchanged=scan.unchanged,
            skipped=tuple(scan.skipped + self.skipped), tiles=tiles, encoded=self.encoded,
            seconds=seconds, vrt_sources=scan.vrt_sources,
            timing={**timing, "commit_s": self.writer.commit_s},
            roots_added=tuple(scan.roots_added), roots=tuple(store.roots()),
        )
