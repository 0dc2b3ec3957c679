"""The ``cach`` subcommands, one module each (``cli.py`` imports them by name), and what
several of them share."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def bar_disable(args: argparse.Namespace) -> bool | None:
    """The ``disable`` of a tqdm bar: off with --quiet, else on only when stderr is a terminal
    (tqdm's None), so logs and pipes get no bar lines."""
    return True if getattr(args, "quiet", False) else None


def request_from_args(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """The typed request ``cls`` (``model_runtime.protocol``) of parsed arguments: each field
    takes the argument of its name when given, lists become tuples; ``given`` overrides."""
    values = {}
    for f in dataclasses.fields(cls):
        value = given.get(f.name, getattr(args, f.name, None))
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)
