"""The analyst's marks on tiles (right: more like this; wrong: less like this), Qt-free.

The dock lists them, Refine sends them as the search's ``positive``/``negative`` tile ids, and
the analyst can undo one mark (the selected one, else the latest) or clear them all. A tile has
at most one mark: marking it again replaces the earlier mark and makes it the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mark:
    """One marked tile: the hit it was marked on, and whether it is right."""

    hit: Any  # protocol.Hit (tile_id, rank, name, ...)
    right: bool

    @property
    def tile_id(self) -> int:
        return int(self.hit.tile_id)


class Marks:
    """The marks of the current search session, in the order they were made."""

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
