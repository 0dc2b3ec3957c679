"""Where rasters come from and what may be read: URI-aware source handling for indexing.

One rule for the whole product: **a network source is read only when the user names it directly
as a top-level path; a network source referenced from inside a file (a VRT, a sidecar, GDAL
metadata, anything else GDAL follows) is always refused**, and the file is skipped with why.

- :func:`list_sources`: the sources under the paths a user named (:class:`SourceRef`: URI, size,
  version), and what was skipped and why (broken links, link loops, pipes, missing paths).
- :func:`check_source`: before a source is read, refuse what it must not pull in (network
  sources, GDAL redirections, files outside the named folders, VRT cycles); returns the local
  files a VRT reads, for the summary.
- :func:`open_raster`: a GDAL driver allowlist chosen from the file's content, and a GDAL
  configuration that cannot reach the network while the dataset is open.
- :func:`quick_signature`: a cheap content signature (size, first and last 64 KiB).

Remote sources (``s3://``, issue 10) plug in through :func:`register_remote_store`; until a
store is registered for a scheme, a remote path is a ``ConfigError`` (``extra_missing``).
Nothing here calls ``os.path.exists`` on a remote URI or reads a whole file.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import re
import stat
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from model_runtime.errors import CachError, ConfigError, DataError
from model_runtime.fsutil import file_signature
from model_runtime.protocol import Skipped

LOG = logging.getLogger(__name__)

#: the file extensions a folder listing takes as rasters (the content decides the driver)
RASTER_EXTENSIONS = (".tif", ".tiff", ".jp2", ".vrt", ".jpg", ".jpeg", ".png", ".img")

#: bytes read to tell a file's format (GDAL's own identification reads 1 KiB)
HEAD_BYTES = 1024
#: a VRT is parsed whole to check its sources; larger ones are refused
MAX_VRT_BYTES = 32 << 20
#: VRTs nested deeper than this are refused (GDAL has no cycle check of its own)
MAX_VRT_DEPTH = 8
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
#: format (from :func:`sniff`) -> the one GDAL driver allowed to open it
DRIVERS = {
    "tiff": "GTiff",  # GeoTIFF and COG
    "jpeg": "JPEG",
    "png": "PNG",
    "jp2": "JP2OpenJPEG",
    "hfa": "HFA",  # ERDAS Imagine .img
    "webp": "WEBP",
    "vrt": "VRT",  # only after check_source
}
FORMATS_TEXT = "GeoTIFF/COG, JPEG, PNG, JPEG 2000, ERDAS Imagine, WebP or VRT"
_MAGIC = (
    (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"), (b"\xff\x4f\xff\x51", "jp2"),
    (b"EHFA_HEADER_TAG", "hfa"),
)
#: GDAL virtual file systems that reach the network (any other ``/vsi`` is refused too)
NETWORK_VSI = (
    "/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift",
    "/vsihdfs", "/vsiwebhdfs",
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: ``DRIVER:...`` connection strings (``HDF5:``, ``MEM:::``, ``WMS:``); one letter is a drive
_CONNECTION = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")
_OVERVIEW_FILE = re.compile(rb"OVERVIEW_FILE")


# --- source identity -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceRef:
    """One source: ``uri`` (a local file's real absolute path, or ``s3://bucket/key``), its
    ``size`` and ``version`` (local: the mtime in integer nanoseconds, as text; remote: the
    ETag). ``mtime`` (seconds) is kept for stores written before ``version`` existed. Its
    identity never needs the file read."""

    uri: str
    size: int
    version: str
    mtime: float = 0.0

    @property
    def is_remote(self) -> bool:
        return is_remote_uri(self.uri)

    @property
    def gdal_path(self) -> str:
        """The name GDAL opens: the path itself, or ``/vsis3/bucket/key`` for ``s3://``."""
        return gdal_path(self.uri)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


def is_remote_uri(text: str) -> bool:
    """True for ``scheme://...`` and GDAL ``/vsi...`` names: never judged by a path check."""
    return bool(_SCHEME.match(text)) or text.startswith("/vsi")


def gdal_path(uri: str) -> str:
    """``s3://b/k`` -> ``/vsis3/b/k`` (likewise ``gs://``, ``az://``); anything else as is."""
    for scheme, vsi in (("s3://", "/vsis3/"), ("gs://", "/vsigs/"), ("az://", "/vsiaz/")):
        if uri.startswith(scheme):
            return vsi + uri[len(scheme):]
    return uri


def local_ref(path: str | os.PathLike) -> SourceRef:
    """The :class:`SourceRef` of a local file (``OSError`` when it cannot be stat'ed)."""
    real = os.path.realpath(os.fspath(path))
    st = os.stat(real)
    return SourceRef(real, st.st_size, str(st.st_mtime_ns), st.st_mtime)


def as_ref(source: SourceRef | str | os.PathLike) -> SourceRef:
    """A :class:`SourceRef` for a ref, a remote URI (size and version unknown) or a local
    path (``DataError`` ``file_not_found`` when it is gone)."""
    if isinstance(source, SourceRef):
        return source
    text = os.fspath(source)
    if is_remote_uri(text):
        return SourceRef(text, -1, "")
    try:
        return local_ref(text)
    except OSError as err:
        raise _unreadable(text, err) from err


def quick_signature(source: SourceRef | str | os.PathLike) -> str:
    """A cheap content signature: SHA-1 of the size and the first and last 64 KiB for a local
    file (tells a touched-but-unchanged file from a changed one without reading it whole); the
    ETag for a remote object."""
    ref = as_ref(source)
    if ref.is_remote:
        return f"etag:{ref.version}"
    return file_signature(ref.uri)


#: the name the index builder uses
source_signature = quick_signature


# --- remote stores (issue 10 plugs in here) ------------------------------------------------------
class RemoteStore(Protocol):
    """What a remote scheme provides: listing, ranged reads and opening. Registered per scheme
    (``s3``) by the object-storage code; its GDAL configuration is its own business."""

    def list_sources(self, uri: str) -> tuple[list[SourceRef], list[Skipped]]: ...

    def read_range(self, ref: SourceRef, start: int, length: int) -> bytes: ...

    def open(self, ref: SourceRef, driver: str) -> Any: ...


_STORES: dict[str, RemoteStore] = {}
#: scheme -> module that registers its store when imported (loaded on the first such path)
STORE_MODULES = {"s3": "model_runtime.raster.remote"}


def register_remote_store(scheme: str, store: RemoteStore) -> None:
    """Let ``scheme://`` (and its ``/vsi`` twin) be listed, checked and opened through ``store``."""
    _STORES[scheme.lower()] = store


def _scheme(uri: str) -> str:
    if "://" in uri:
        return uri.split("://", 1)[0].lower()
    prefix = uri.split("/")[1] if uri.count("/") > 1 else uri
    return {"vsis3": "s3", "vsigs": "gs", "vsiaz": "az"}.get(prefix, prefix)


def _store(uri: str) -> RemoteStore:
    scheme = _scheme(uri)
    if scheme not in _STORES and scheme in STORE_MODULES:
        try:
            importlib.import_module(STORE_MODULES[scheme])
        except ImportError as err:
            LOG.info("no store for %s:// (%s)", scheme, err)
    store = _STORES.get(scheme)
    if store is None:
        raise ConfigError(
            f"{uri}: remote sources ({scheme}) are not supported by this installation. Object "
            "storage (s3://) needs the object-storage extra (pip install -r "
            "requirements/s3.txt); or index a local folder.", code="extra_missing")
    return store


# --- listing -------------------------------------------------------------------------------------
def list_sources(
    paths: Iterable[str | os.PathLike], allow_outside_sources: bool = False
) -> tuple[list[SourceRef], list[Skipped]]:
    """The sources under ``paths``: files named directly (any extension), plus files with a
    raster extension (:data:`RASTER_EXTENSIONS`) under named folders; hidden files and
    folders are left out, folder links are not followed (no loops). Sorted by URI, each once.

    Skipped, with a reason: a missing path (``file_not_found``); a broken link, a link loop,
    a pipe or device (``data_unreadable``); a link inside a named folder to a file outside all
    of them, unless ``allow_outside_sources`` (``source_refused``). A remote URI is listed by
    its registered store (``ConfigError`` without one)."""
    named = [os.fspath(p) for p in paths]
    roots = real_roots(named)
    refs: dict[str, SourceRef] = {}
    skipped: list[Skipped] = []
    for raw in named:
        if is_remote_uri(raw):
            found, skips = _store(raw).list_sources(raw)
        else:
            found, skips = _list_local(raw, roots, allow_outside_sources)
        refs.update((r.uri, r) for r in found)
        skipped.extend(skips)
    return [refs[k] for k in sorted(refs)], skipped


def real_roots(paths: Iterable[str | os.PathLike]) -> tuple[str, ...]:
    """The folders a user named, as real paths: a named folder, or a named file's folder (both
    the link's and its target's). Remote URIs have none."""
    roots: list[str] = []
    for raw in paths:
        text = os.fspath(raw)
        if is_remote_uri(text):
            continue
        path = os.path.abspath(os.path.expanduser(text))
        if os.path.isdir(path):
            roots.append(os.path.realpath(path))
        else:
            roots += [os.path.realpath(os.path.dirname(path)),
                      os.path.dirname(os.path.realpath(path))]
    return tuple(dict.fromkeys(roots))


def _list_local(raw: str, roots, allow_outside: bool) -> tuple[list[SourceRef], list[Skipped]]:
    path = os.path.abspath(os.path.expanduser(raw))
    try:
        st = os.stat(path)
    except OSError as err:
        return [], [_skip(_unreadable(path, err))]
    if stat.S_ISDIR(st.st_mode):
        return _walk(path, roots, allow_outside)
    ref, skip = _file_ref(path, roots, allow_outside=True)  # named directly: the user's choice
    return ([ref] if ref else []), ([skip] if skip else [])


def _walk(top: str, roots, allow_outside: bool) -> tuple[list[SourceRef], list[Skipped]]:
    refs: list[SourceRef] = []
    skipped: list[Skipped] = []

    def unlistable(err: OSError) -> None:
        skipped.append(Skipped(err.filename or top, f"{err.filename or top}: cannot list this "
                               f"folder ({err.strerror or err})", "data_unreadable"))

    # followlinks=False: a linked folder is not walked, so a link loop cannot trap the walk
    for root, dirs, files in os.walk(top, onerror=unlistable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(RASTER_EXTENSIONS):
                continue
            ref, skip = _file_ref(os.path.join(root, name), roots, allow_outside)
            refs += [ref] if ref else []
            skipped += [skip] if skip else []
    return refs, skipped


def _file_ref(path: str, roots, allow_outside: bool) -> tuple[SourceRef | None, Skipped | None]:
    try:
        st = os.stat(path)
    except OSError as err:  # a broken link or a link loop
        return None, _skip(_unreadable(path, err))
    if not stat.S_ISREG(st.st_mode):
        return None, Skipped(path, f"{path}: not a regular file (a pipe, socket or device); "
                             "not read", "data_unreadable")
    real = os.path.realpath(path)
    if not allow_outside and not _inside(real, roots):
        return None, Skipped(path, f"{path}: links to {real}, outside the folders you named; "
                             "pass --allow-outside-sources to read it", "source_refused")
    return SourceRef(real, st.st_size, str(st.st_mtime_ns), st.st_mtime), None


def _unreadable(path: str, err: OSError) -> DataError:
    """The ``DataError`` for a path that cannot be stat'ed, worded for links too."""
    if os.path.islink(path):
        if err.errno == errno.ELOOP:
            return DataError(f"{path}: a symbolic link loop (following it leads back to a "
                             "link already followed); not read", code="data_unreadable", path=path)
        target = _readlink(path)
        return DataError(f"{path}: a broken symbolic link (its target {target} does not "
                         "exist); not read", code="data_unreadable", path=path)
    if err.errno == errno.ENOENT:
        return DataError(f"{path}: no such file or folder", code="file_not_found", path=path)
    return DataError(f"{path}: cannot be read ({err.strerror or err})", code="data_unreadable",
                     path=path)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _skip(err: CachError) -> Skipped:
    return Skipped(str(err.details.get("path", "")), str(err), err.code)


def _inside(real: str, roots: Sequence[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


# --- format sniffing -----------------------------------------------------------------------------
def sniff(head: bytes) -> str:
    """The format a file's first bytes say it is: a :data:`DRIVERS` key, ``xml`` (another GDAL
    XML dataset: WMS, WCS, OGR VRT, ...: a redirection) or ``unknown``."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if b"<VRTDataset" in head:  # GDAL's own test: anywhere in the first 1 KiB
        return "vrt"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "xml"
    return "unknown"


def _head(path: str, size: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def _xml_root_tag(head: bytes) -> str:
    match = re.search(rb"<([A-Za-z_][\w.-]*)", head.replace(b"<?xml", b"").replace(b"<!--", b""))
    return match.group(1).decode("ascii", "replace") if match else "?"


# --- checking ------------------------------------------------------------------------------------
class _Refused(Exception):
    """Why one file (the source being checked, or a file it pulls in) is not read."""

    def __init__(self, reason: str, code: str = "source_refused") -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class _Check:
    """One :func:`check_source` walk: what it may read and what it found."""

    top: str
    roots: tuple[str, ...]
    allow_outside: bool
    reads: dict[str, None] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)


def check_source(
    source: SourceRef | str | os.PathLike,
    roots: Sequence[str | os.PathLike],
    allow_outside_sources: bool = False,
) -> list[str]:
    """Refuse a source that would make GDAL read what it must not; return the local files it
    reads besides itself (a VRT's sources, nested VRTs included; empty for a plain raster).

    Raises ``DataError``: ``source_refused`` for a network source or GDAL redirection inside
    the file, a VRT source outside ``roots`` (the folders the user named) unless
    ``allow_outside_sources``, a missing VRT source, a VRT cycle or a too-deep nesting, a raw
    or derived (pixel-function) band, a sidecar GDAL would follow; ``not_a_raster`` for a
    format outside the allowlist; ``file_not_found`` when the source itself is gone."""
    ref = as_ref(source)
    if ref.is_remote:
        return _check_remote(ref)
    check = _Check(ref.uri, real_roots(roots), allow_outside_sources)
    try:
        _check_file(check, ref.uri, depth=0, chain=())
    except _Refused as refused:
        raise DataError(f"{ref.uri}: {refused}", code=refused.code, path=ref.uri) from None
    except OSError as err:
        raise _unreadable(ref.uri, err) from err
    _approve(ref.uri)
    return list(check.reads)


def _check_file(check: _Check, path: str, depth: int, chain: tuple[str, ...]) -> None:
    """Check one file (the source, or a file a VRT pulls in) and, for a VRT, its sources."""
    top = depth == 0
    real = _regular(path, top)
    if real in chain:
        names = " -> ".join(os.path.basename(p) for p in (*chain, real))
        raise _Refused(f"VRT cycle ({names}); not read")
    if not top and not check.allow_outside and not _inside(real, check.roots):
        raise _Refused(f"its source {path} is outside the folders you named; pass "
                       "--allow-outside-sources to read it")
    if real in check.done:
        return
    kind = _kind_of(real, path, top)
    _check_sidecars(real)
    if kind == "vrt":
        if depth >= MAX_VRT_DEPTH:
            raise _Refused(f"VRTs nested more than {MAX_VRT_DEPTH} deep (at {path}); not read")
        for child in vrt_sources(path):
            check.reads.setdefault(child)
            _check_file(check, child, depth + 1, (*chain, real))
    check.done.add(real)


def _regular(path: str, top: bool) -> str:
    """The real path of a regular file; a missing, looping or special file is refused."""
    try:
        st = os.stat(path)
    except OSError as err:
        if top:
            raise
        what = "is a symbolic link loop" if err.errno == errno.ELOOP else "does not exist"
        raise _Refused(f"its source {path} {what}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _Refused(f"{'it' if top else 'its source ' + path} is not a regular file "
                       "(a pipe, socket or device)", "data_unreadable")
    return os.path.realpath(path)


def _kind_of(real: str, path: str, top: bool) -> str:
    """The file's format, refusing redirections and formats outside the allowlist."""
    head = _head(real)
    kind = sniff(head)
    who = "it" if top else f"its source {path}"
    if kind == "xml":
        raise _Refused(f"{who} is a GDAL XML dataset (<{_xml_root_tag(head)}>): a redirection "
                       "to a service or other files, never read")
    if kind == "unknown":
        raise _Refused(f"{who} is not a raster format CACH reads ({FORMATS_TEXT})",
                       "not_a_raster" if top else "source_refused")
    if kind == "tiff" and _OVERVIEW_FILE.search(head + _tail(real)):
        raise _Refused(f"{who} names an external overview file (OVERVIEW_FILE) in its GDAL "
                       "metadata, which GDAL would follow; not read")
    return kind


def _tail(path: str, size: int = 1 << 16) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - size))
        return fh.read(size)


def _check_sidecars(real: str) -> None:
    """GDAL opens ``x.tif.ovr``/``.msk``/``.aux`` and reads ``x.tif.aux.xml`` on its own: each
    must be the plain kind GDAL expects, and the ``.aux.xml`` must not name an overview file."""
    stem = os.path.splitext(real)[0]
    expected = ((real + ".ovr", "tiff"), (real + ".OVR", "tiff"), (real + ".msk", "tiff"),
                (real + ".MSK", "tiff"), (real + ".aux", "hfa"), (stem + ".aux", "hfa"))
    for side, kind in expected:
        if os.path.lexists(side) and _sidecar_kind(side) != kind:
            raise _Refused(f"its sidecar {os.path.basename(side)} is not the plain "
                           f"{DRIVERS[kind]} file GDAL expects (GDAL would follow it); not read")
    pam = real + ".aux.xml"
    if os.path.isfile(pam) and _OVERVIEW_FILE.search(_head(pam, 4 << 20)):
        raise _Refused(f"its sidecar {os.path.basename(pam)} names an external overview file "
                       "(OVERVIEW_FILE), which GDAL would follow; not read")


def _sidecar_kind(path: str) -> str:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "special"
        return sniff(_head(path))
    except OSError:
        return "missing"


def _check_remote(ref: SourceRef) -> list[str]:
    """A remote object named by the user may be read; a VRT or redirection inside it may not."""
    head = _store(ref.uri).read_range(ref, 0, HEAD_BYTES)
    kind = sniff(head)
    if kind in ("vrt", "xml"):
        raise DataError(f"{ref.uri}: a VRT or GDAL XML dataset in object storage would make "
                        "GDAL fetch the sources it names; not read", code="source_refused",
                        path=ref.uri)
    if kind == "unknown":
        raise DataError(f"{ref.uri}: not a raster format CACH reads ({FORMATS_TEXT})",
                        code="not_a_raster", path=ref.uri)
    return []


# --- VRT parsing ---------------------------------------------------------------------------------
#: elements naming a dataset GDAL opens (SimpleSource & co, warped VRT, pansharpening, ...)
_SOURCE_TAGS = frozenset({"SourceFilename", "SourceDataset"})
#: metadata keys GDAL opens as datasets (geolocation arrays, PAM overviews)
_DATASET_KEYS = frozenset({"X_DATASET", "Y_DATASET", "OVERVIEW_FILE"})


def vrt_sources(path: str) -> list[str]:
    """The files a VRT names, resolved as GDAL resolves them (``relativeToVRT`` against the
    VRT's folder, other relative names against the working directory). Raises ``_Refused`` for
    anything that is not a plain local file name, or for bands that read files as raw bytes or
    run code."""
    root = _parse_vrt(path)
    found = []
    for el in root.iter():
        _refuse_element(el, path)
        if el.tag in _SOURCE_TAGS:
            found.append(_resolve(el.text or "", el.get("relativeToVRT") == "1", path))
    return list(dict.fromkeys(found))


def _parse_vrt(path: str) -> ET.Element:
    if os.path.getsize(path) > MAX_VRT_BYTES:
        raise _Refused(f"{path} is a VRT larger than {MAX_VRT_BYTES >> 20} MiB; not read")
    with open(path, "rb") as fh:
        data = fh.read(MAX_VRT_BYTES + 1)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:  # GDAL's parser has no entities either
        raise _Refused(f"{path} declares XML entities; not read")
    try:
        return ET.fromstring(data)
    except ET.ParseError as err:
        raise _Refused(f"{path} is not valid VRT XML ({err})", "data_unreadable") from None


def _refuse_element(el: ET.Element, path: str) -> None:
    name = os.path.basename(path)
    sub = el.get("subClass", "")
    if el.tag == "VRTRasterBand" and sub == "VRTRawRasterBand":
        raw = (el.findtext("SourceFilename") or "").strip()[:200]
        raise _Refused(f"{name} has a raw band reading {raw} (VRTRawRasterBand reads any "
                       "file's bytes as pixels); not read")
    if el.tag == "VRTRasterBand" and sub == "VRTDerivedRasterBand":
        raise _Refused(f"{name} has a derived band (a pixel function); not read")
    if el.tag in ("PixelFunctionCode", "PixelFunctionLanguage"):
        raise _Refused(f"{name} carries pixel-function code; not read")
    key = (el.get("key") or el.get("name") or "").upper()
    if (el.tag == "MDI" and key in _DATASET_KEYS) or (
        el.tag == "Argument" and ("FILENAME" in key or "DATASET" in key)
    ):
        raise _Refused(f"{name} names another dataset in <{el.tag} {key}>; not read")
    if el.tag == "OOI" and _remote_or_vsi(el.text or ""):
        raise _Refused(f"{name} passes a network address as an open option; not read")


def _remote_or_vsi(text: str) -> bool:
    t = text.strip().lower()
    return "://" in t or t.startswith("/vsi") or any(v in t for v in NETWORK_VSI)


def _resolve(text: str, relative: bool, vrt_path: str) -> str:
    name = text.strip()
    if not name:
        raise _Refused(f"{os.path.basename(vrt_path)} has an empty source file name")
    if "://" in name or any(v in name.lower() for v in NETWORK_VSI):
        raise _Refused(f"its source {name} is a network source: a network source is read only "
                       "when you name it directly, never from inside a file")
    if name.lower().startswith("/vsi"):
        raise _Refused(f"its source {name} is a GDAL virtual file system path; not read")
    if name.startswith("<") or _CONNECTION.match(name):
        raise _Refused(f"its source {name[:120]} is a GDAL dataset definition or connection "
                       "string, not a file; not read")
    if relative and not os.path.isabs(name):
        return os.path.normpath(os.path.join(os.path.dirname(vrt_path), name))
    return os.path.abspath(name)


# --- opening -------------------------------------------------------------------------------------
#: real path -> (size, mtime_ns) of VRTs that passed check_source in this process
_APPROVED: dict[str, tuple[int, int]] = {}
_APPROVED_LOCK = threading.Lock()


def _approve(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    with _APPROVED_LOCK:
        if len(_APPROVED) > 100_000:
            _APPROVED.clear()
        _APPROVED[os.path.realpath(path)] = (st.st_size, st.st_mtime_ns)


def _approved(real: str) -> bool:
    try:
        st = os.stat(real)
    except OSError:
        return False
    return _APPROVED.get(real) == (st.st_size, st.st_mtime_ns)


def open_raster(
    source: SourceRef | str | os.PathLike,
    roots: Sequence[str | os.PathLike] | None = None,
    allow_outside_sources: bool = False,
):
    """Open a raster for reading, as a context manager that yields the rasterio dataset.

    The driver is the one :data:`DRIVERS` allows for the file's content (a ``.tif`` holding VRT
    XML opens as a VRT, never as anything else). A VRT opens only once :func:`check_source`
    has passed for it in this process, or passes now: against ``roots`` when given, else on
    content alone (no network, no redirection, no raw bands; the folder rule is the indexer's,
    applied when the source was listed). While the dataset is open, GDAL cannot reach the
    network from this thread (:data:`NO_NETWORK_GDAL`). Failures are ``DataError``s naming the
    file."""
    ref = as_ref(source)
    if ref.is_remote:
        store = _store(ref.uri)
        return _refuse_overview_file(store.open(ref, DRIVERS[_remote_kind(ref, store)]), ref.uri)
    real = ref.uri
    try:
        _regular(real, top=True)  # before any read: a pipe would block
        kind = _kind_of(real, real, top=True)
        _check_sidecars(real)
    except _Refused as refused:
        raise DataError(f"{real}: {refused}", code=refused.code, path=real) from None
    except OSError as err:
        raise _unreadable(real, err) from err
    if kind == "vrt" and not _approved(real):
        check_source(ref, roots or (), allow_outside_sources or roots is None)
    return _open_guarded(real, DRIVERS[kind])


def _remote_kind(ref: SourceRef, store: RemoteStore) -> str:
    kind = sniff(store.read_range(ref, 0, HEAD_BYTES))
    if kind not in DRIVERS or kind == "vrt":
        _check_remote(ref)  # raises the reason
    return kind


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
