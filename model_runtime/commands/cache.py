"""``cach cache``: list the exported-graph cache with sizes, and prune it.

``cach cache`` (or ``cach cache list``) prints one line per graph folder, least recently used
first; ``cach cache prune`` deletes folders of older formats and then the least recently used
until the cache holds at most ``--max-mb`` MB (default: the cap, ``$CACH_GRAPH_CACHE_MB`` or
1024); ``--all`` empties it. Graphs are rebuilt on the next start that needs them.
"""

from __future__ import annotations

import argparse
import time

MB = 1 << 20


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser("cache", help=help_text, description=help_text)
    p.add_argument("action", nargs="?", choices=("list", "prune"), default="list",
                   help="list (default) or prune")
    p.add_argument("--max-mb", type=int, default=None,
                   help="prune down to this many MB (default: $CACH_GRAPH_CACHE_MB or 1024)")
    p.add_argument("--all", action="store_true", help="prune everything")
    return p


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def _line(entry, now: float) -> str:
    key = entry.key or {}
    what = (f"{key.get('graph', '?'):5} {key.get('engine', '?')} {key.get('precision', '?')}"
            if entry.current else "older format (pruned first)")
    return (f"{entry.size / MB:8.1f} MB  {_age(now - entry.last_used):>12}  {what}  "
            f"{entry.folder.name}")


def run(args: argparse.Namespace) -> int:
    from model_runtime.errors import ConfigError
    from model_runtime.model.graphs import cache_entries, cap_bytes, evict, graphs_root

    root = graphs_root()
    if args.action == "prune":
        if args.max_mb is not None and args.max_mb < 0:
            raise ConfigError("--max-mb must be 0 or more.", code="bad_value")
        cap = None if args.max_mb is None else args.max_mb * MB
        removed = evict(root, cap=cap, everything=args.all)
        freed = sum(e.size for e in removed)
        print(f"pruned {len(removed)} folder(s), {freed / MB:.1f} MB freed")
    entries = cache_entries(root)
    now = time.time()
    for entry in entries:
        print(_line(entry, now))
    total = sum(e.size for e in entries)
    print(f"{len(entries)} folder(s), {total / MB:.1f} MB in {root} (cap {cap_bytes() / MB:.0f} "
          "MB, least recently used first)")
    return 0
