"""Opening rasters with GDAL: the driver the content allows, and a GDAL configuration that cannot
reach the network while a local dataset is open.

:func:`open_raster` is the one way the product opens a raster: local files after
:mod:`.checks` (a VRT only once :func:`~.checks.check_source` passed), remote objects through
their store (:mod:`.stores`). :func:`no_network` holds the same GDAL configuration around other
local reads.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager

from model_runtime.errors import DataError
from model_runtime.raster.checks import DRIVERS, approved, check_source, local_kind, remote_kind
from model_runtime.raster.refs import SourceRef, as_ref
from model_runtime.raster.stores import store_for

#: GDAL configuration held while a local dataset is open: nothing GDAL follows from inside a
#: file may reach the network. ``/vsicurl/`` and every handler built on it (``/vsis3/``, ...)
#: accept only the allowed file name; plain HTTP (WMS, GML xlinks) goes to a closed local port.
#: Verified against a loopback listener (tests/runtime/test_sources.py): the allowed file name
#: stops /vsicurl/ sources of a VRT, an .ovr sidecar, PAM and in-TIFF OVERVIEW_FILE; the proxy
#: stops the WMS driver; the extension list is a second lock. GDAL_DISABLE_READDIR_ON_OPEN is
#: not needed for that and would hide local sidecars (world files, overviews): not set.
NO_NETWORK_GDAL = {
    "CPL_VSIL_CURL_ALLOWED_FILENAME": "/vsicurl/cach-network-disabled",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".cach-network-disabled",
    "GDAL_HTTP_PROXY": "127.0.0.1:9",
    "GDAL_HTTPS_PROXY": "127.0.0.1:9",
    "GDAL_HTTP_CONNECTTIMEOUT": "1",
    "GDAL_HTTP_TIMEOUT": "1",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_VRT_ENABLE_PYTHON": "NO",
}


def open_raster(
    source: SourceRef | str | os.PathLike,
    roots: Sequence[str | os.PathLike] | None = None,
    allow_outside_sources: bool = False,
):
    """Open a raster for reading, as a context manager that yields the rasterio dataset.

    The driver is the one :data:`~.checks.DRIVERS` allows for the file's content (a ``.tif``
    holding VRT XML opens as a VRT, never as anything else). A VRT opens only once
    :func:`~.checks.check_source` has passed for it in this process, or passes now: against
    ``roots`` when given, else on content alone (no network, no redirection, no raw bands; the
    folder rule is the indexer's, applied when the source was listed). While the dataset is
    open, GDAL cannot reach the network from this thread (:data:`NO_NETWORK_GDAL`). Failures
    are ``DataError``s naming the file."""
    ref = as_ref(source)
    if ref.is_remote:
        driver = DRIVERS[remote_kind(ref)]
        return _refuse_overview_file(store_for(ref.uri).open(ref, driver), ref.uri)
    real = ref.uri
    kind = local_kind(real)
    if kind == "vrt" and not approved(real):
        check_source(ref, roots or (), allow_outside_sources or roots is None)
    return _open_guarded(real, DRIVERS[kind])


_ALIAS_LOCK = threading.Lock()
_ALIAS_DIR: list[str] = []


def utf8_name(path: str) -> str:
    """A name GDAL can open for a local path. GDAL takes UTF-8; a file whose name is not UTF-8
    (Python holds its bytes as surrogate escapes) is opened through a symbolic link with a
    UTF-8 name in a private folder of this process, so it can be indexed and read."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    import atexit
    import hashlib
    import shutil
    import tempfile

    with _ALIAS_LOCK:
        if not _ALIAS_DIR:
            _ALIAS_DIR.append(tempfile.mkdtemp(prefix="cach-names-"))  # mode 0700
            atexit.register(shutil.rmtree, _ALIAS_DIR[0], True)
        suffix = os.path.splitext(path)[1]
        suffix = suffix if suffix.isascii() and suffix.isprintable() else ""
        link = os.path.join(_ALIAS_DIR[0],
                            hashlib.sha256(os.fsencode(path)).hexdigest()[:32] + suffix)
        if not os.path.lexists(link):
            os.symlink(os.fsencode(path), os.fsencode(link))
    return link


def _open_guarded(path: str, driver: str) -> GuardedDataset:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    _hold_no_network()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            dataset = rasterio.open(utf8_name(path), driver=driver)
    except Exception as err:  # rasterio raises several types; all mean "not readable"
        _release_no_network()
        raise DataError(f"{path}: cannot be opened as a raster ({_reason(err)})",
                        code="data_unreadable", path=path) from err
    return _refuse_overview_file(GuardedDataset(dataset), path)


def _refuse_overview_file(dataset, path: str):
    """GDAL follows an ``OVERVIEW_FILE`` in a file's own metadata (a TIFF tag) to any path or
    URL: refuse such a dataset before anything reads overviews."""
    tags = getattr(dataset, "tags", None)
    if callable(tags) and tags(ns="OVERVIEWS").get("OVERVIEW_FILE"):
        dataset.close()
        raise DataError(f"{path}: names an external overview file (OVERVIEW_FILE), which GDAL "
                        "would follow; not read", code="source_refused", path=path)
    return dataset


class GuardedDataset:
    """An open rasterio dataset that keeps GDAL off the network until it is closed.

    ``with open_raster(p) as src`` gives the rasterio dataset itself; attributes are also
    forwarded, so ``open_raster(p).read(...)`` works (then call ``close()``)."""

    def __init__(self, dataset) -> None:
        self._dataset = dataset
        self._held = True

    def __enter__(self):
        return self._dataset

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):
        return getattr(self._dataset, name)

    def close(self) -> None:
        if self._held:
            self._held = False
            try:
                self._dataset.close()
            finally:
                _release_no_network()


# --- the no-network GDAL configuration, per thread -----------------------------------------------
_HELD = threading.local()


def _hold_no_network() -> None:
    """Set :data:`NO_NETWORK_GDAL` for this thread (counted: the first hold sets it, the last
    release restores what was there). rasterio sets options thread-locally in worker threads and
    globally in the main thread."""
    from rasterio.env import get_gdal_config, set_gdal_config

    depth = getattr(_HELD, "depth", 0)
    if depth == 0:
        _HELD.saved = {k: get_gdal_config(k, normalize=False) for k in NO_NETWORK_GDAL}
        for key, value in NO_NETWORK_GDAL.items():
            set_gdal_config(key, value, normalize=False)
    _HELD.depth = depth + 1


def _release_no_network() -> None:
    from rasterio._env import del_gdal_config
    from rasterio.env import set_gdal_config

    _HELD.depth = max(0, getattr(_HELD, "depth", 1) - 1)
    if _HELD.depth == 0:
        for key, value in getattr(_HELD, "saved", {}).items():
            if value is None:
                del_gdal_config(key)
            else:
                set_gdal_config(key, value, normalize=False)


@contextmanager
def no_network():
    """GDAL cannot reach the network from this thread inside the block (local files only)."""
    _hold_no_network()
    try:
        yield
    finally:
        _release_no_network()


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]
