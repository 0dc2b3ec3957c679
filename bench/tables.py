"""The one table printer the bench scripts share (they run as scripts: bench/ is on sys.path)."""

from __future__ import annotations

import sys


def table(title: str, header: list[str], rows: list[list]) -> None:
    """Print ``rows`` under ``header`` as a pipe-separated table with aligned columns."""
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    sys.stdout.flush()
