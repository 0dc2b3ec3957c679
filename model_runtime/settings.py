"""The runtime's ``CACH_*`` environment variables, read in one place with one default each.

:class:`Settings` has one field per variable (the variable is ``CACH_`` + the field's name in
capitals). Values stay text here: the code that uses a value parses and checks it, so a bad value
is reported only by the operation that needs it, naming the variable. Stdlib only, no side effects.

:func:`current` reads the environment at each call (tests set variables per test, worker and Ray
processes inherit or receive them) and reuses the object while the ``CACH_*`` values stay the
same. docs/settings.md lists every variable; a test keeps that table and these fields in step.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache

PREFIX = "CACH_"


def _var(default: str, doc: str) -> str:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every runtime setting from the environment; an unset or blank variable takes the default
    (``""`` means the behaviour the doc names)."""

    data: str = _var("", "data root; unset: ../shared/data beside the plugin")
    cache: str = _var("", "feature caches and derived files; unset: $XDG_CACHE_HOME/cach")
    device: str = _var("auto", "auto, cpu or cuda[:N]; auto takes CUDA when present")
    backend: str = _var("", "model backend; unset: torch on CUDA, else the default CPU engine")
    precision: str = _var("", "model precision (fp32, int8, bf16...); unset: the backend's first")
    checkpoint: str = _var("", "local backbone checkpoint; unset: the backbone config's")
    encoder_threads: str = _var("", "intra-op threads of a compiled engine (1-1024); unset: all")
    encoder_lanes: str = _var("", "concurrent image-graph calls (1-1024); unset: 2 on 2+ cores")
    graph_builder: str = _var("auto", "how missing graphs are built: auto, numpy or torch")
    graph_cache: str = _var("", "graph cache folder; unset: <cache>/graphs")
    graph_cache_mb: str = _var("", "graph cache size cap in MB; unset: the built-in cap")
    ray_address: str = _var("", "Ray cluster address; unset: a local Ray started here")
    ray_actors: str = _var("", "Ray actor pool size; unset: cluster CPUs / CPUs per actor")
    ray_cpus: str = _var("1", "CPUs per Ray actor")
    ray_gpus: str = _var("", "GPUs per Ray actor; unset: 1 when the cluster has GPUs")
    ray_stall_s: str = _var("600", "seconds without progress before a Ray run is stalled")
    ray_num_cpus: str = _var("", "CPUs of a local Ray started here; unset: all")
    ray_object_store_mb: str = _var("512", "object store MB of a local Ray started here")
    ray_start_warn_s: str = _var("60", "seconds before a slow local Ray start is reported")

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of field ``name``."""
        return PREFIX + name.upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        return _build(tuple(env.get(cls.variable(f.name)) for f in fields(cls)))


def variables() -> dict[str, str]:
    """Each variable with its field's doc, in field order."""
    return {Settings.variable(f.name): f.metadata["doc"] for f in fields(Settings)}


@lru_cache(maxsize=16)
def _build(values: tuple[str | None, ...]) -> Settings:
    given = {}
    for f, value in zip(fields(Settings), values, strict=True):
        text = (value or "").strip()
        if text:
            given[f.name] = text
    return Settings(**given)


def current() -> Settings:
    """The settings in ``os.environ`` now (one object per distinct set of values)."""
    return Settings.from_env()


def reset() -> None:
    """Forget the cached objects (reading is keyed on the values, so this is never needed for
    correctness)."""
    _build.cache_clear()
