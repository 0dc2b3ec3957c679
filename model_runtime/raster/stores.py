"""Remote stores, one per URI scheme: what lists, reads byte ranges of and opens ``s3://``
objects (and their ``/vsis3/`` twins) for :mod:`.sources`, :mod:`.checks` and :mod:`.gdal_open`.

A store is made on the first path of its scheme from :data:`STORE_FACTORIES`, a (module, class)
pair: this registry imports the module by name and calls the class, so a store's module needs
nothing from here and the imports run one way (``stores -> remote -> refs``). Until a store
exists for a scheme, a path of that scheme is a ``ConfigError`` (``extra_missing``).
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, Protocol

from model_runtime.errors import ConfigError
from model_runtime.protocol import Skipped
from model_runtime.raster.refs import SourceRef

LOG = logging.getLogger(__name__)

#: scheme -> (module, class) of the store made on the first path of that scheme
STORE_FACTORIES = {"s3": ("model_runtime.raster.remote", "S3Store")}
#: GDAL virtual file systems -> the scheme of their URIs
_VSI_SCHEMES = {"vsis3": "s3", "vsigs": "gs", "vsiaz": "az"}


class RemoteStore(Protocol):
    """What a remote scheme provides: listing, ranged reads and opening. Its GDAL
    configuration is its own business."""

    def list_sources(self, uri: str) -> tuple[list[SourceRef], list[Skipped]]: ...

    def read_range(self, ref: SourceRef, start: int, length: int) -> bytes: ...

    def open(self, ref: SourceRef, driver: str) -> Any: ...


_STORES: dict[str, RemoteStore] = {}
_STORES_LOCK = threading.Lock()


def register_remote_store(scheme: str, store: RemoteStore) -> None:
    """Let ``scheme://`` (and its ``/vsi`` twin) be listed, checked and opened through ``store``."""
    with _STORES_LOCK:
        _STORES[scheme.lower()] = store


def scheme_of(uri: str) -> str:
    """``s3`` for ``s3://b/k`` and ``/vsis3/b/k``; the lower-case scheme of any other URI."""
    if "://" in uri:
        return uri.split("://", 1)[0].lower()
    prefix = uri.split("/")[1] if uri.count("/") > 1 else uri
    return _VSI_SCHEMES.get(prefix, prefix)


def store_for(uri: str) -> RemoteStore:
    """The store of ``uri``'s scheme, made from :data:`STORE_FACTORIES` on first use;
    ``ConfigError`` (``extra_missing``) when this installation has none."""
    scheme = scheme_of(uri)
    with _STORES_LOCK:
        if scheme not in _STORES and scheme in STORE_FACTORIES:
            made = _make_store(scheme)
            if made is not None:
                _STORES[scheme] = made
        store = _STORES.get(scheme)
    if store is None:
        raise ConfigError(
            f"{uri}: remote sources ({scheme}) are not supported by this installation. Object "
            "storage (s3://) needs the object-storage extra (pip install -r "
            "requirements/s3.txt); or index a local folder.", code="extra_missing")
    return store


def _make_store(scheme: str) -> RemoteStore | None:
    module_name, class_name = STORE_FACTORIES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        LOG.info("no store for %s:// (%s)", scheme, err)
        return None
    return getattr(module, class_name)()
