"""``cach results``: the benchmark behind docs/results.md; research tooling, run from a checkout.

The benchmark lives in the top-level ``research`` package of the repository, which the plugin zip
does not carry. From a repository checkout this command imports it; elsewhere it says how to run it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from model_runtime.errors import ConfigError
from model_runtime.paths import PLUGIN_ROOT

HOW_TO = (
    "'cach results' is research tooling that is not part of the plugin: run it from a clone of "
    "the repository ('make results', or '.venv/bin/pip install -r requirements/research.txt' and "
    "then '.venv/bin/cach results' in the checkout)."
)


def _research():
    """``research.results`` from the checkout this runtime runs from, or None when absent."""
    if (PLUGIN_ROOT / "research" / "__init__.py").is_file() and str(PLUGIN_ROOT) not in sys.path:
        sys.path.insert(0, str(PLUGIN_ROOT))
    try:
        return importlib.import_module("research.results")
    except ModuleNotFoundError as err:
        if err.name not in ("research", "research.results"):
            raise
        return None


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser("results", help=help_text, description=help_text)
    module = _research()
    if module is None:
        # accept any options: run() then explains where the command lives
        p.parse_known_args = lambda args=None, namespace=None: (argparse.Namespace(), [])
        return p
    return module.add_arguments(p)


def run(args) -> int:
    module = _research()
    if module is None:
        raise ConfigError(HOW_TO)
    return module.run(args)
