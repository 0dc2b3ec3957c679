"""The ``cach`` subcommands, one module each (``cli.py`` imports them by name), and what
several of them share."""

from __future__ import annotations

import argparse


def bar_disable(args: argparse.Namespace) -> bool | None:
    """The ``disable`` of a tqdm bar: off with --quiet, else on only when stderr is a terminal
    (tqdm's None), so logs and pipes get no bar lines."""
    return True if getattr(args, "quiet", False) else None
