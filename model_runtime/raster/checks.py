"""What may be read: a source's checks before GDAL opens it, from its content alone.

One rule for the whole product: **a network source is read only when the user names it directly
as a top-level path; a network source referenced from inside a file (a VRT, a sidecar, GDAL
metadata, anything else GDAL follows) is always refused**, and the file is skipped with why.

- :func:`sniff`: a file's format from its first bytes (never its extension).
- :func:`check_source`: refuse what a source must not pull in (network sources, GDAL
  redirections, files outside the named folders, VRT cycles, raw or derived bands, sidecars GDAL
  would follow); returns the local files a VRT reads, for the summary.
- :func:`vrt_sources`: the files a VRT names, resolved as GDAL resolves them.
- :func:`local_kind`, :func:`remote_kind`, :func:`approved`: what :mod:`.gdal_open` asks just
  before it opens a file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from model_runtime.errors import DataError
from model_runtime.raster.refs import SourceRef, as_ref, unreadable
from model_runtime.raster.sources import inside_roots, real_roots
from model_runtime.raster.stores import store_for

#: bytes read to tell a file's format (GDAL's own identification reads 1 KiB)
HEAD_BYTES = 1024
#: a VRT is parsed whole to check its sources; larger ones are refused
MAX_VRT_BYTES = 32 << 20
#: VRTs nested deeper than this are refused (GDAL has no cycle check of its own)
MAX_VRT_DEPTH = 8
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
#: ``DRIVER:...`` connection strings (``HDF5:``, ``MEM:::``, ``WMS:``); one letter is a drive
_CONNECTION = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")
_OVERVIEW_FILE = re.compile(rb"OVERVIEW_FILE")


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
        raise unreadable(ref.uri, err) from err
    _approve(ref.uri)
    return list(check.reads)


def _check_file(check: _Check, path: str, depth: int, chain: tuple[str, ...]) -> None:
    """Check one file (the source, or a file a VRT pulls in) and, for a VRT, its sources."""
    top = depth == 0
    real = _regular(path, top)
    if real in chain:
        names = " -> ".join(os.path.basename(p) for p in (*chain, real))
        raise _Refused(f"VRT cycle ({names}); not read")
    if not top and not check.allow_outside and not inside_roots(real, check.roots):
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
    remote_kind(ref)
    return []


def remote_kind(ref: SourceRef) -> str:
    """The format of a remote object (a :data:`DRIVERS` key other than ``vrt``), from a 1 KiB
    ranged read; ``DataError`` for a VRT, another GDAL XML dataset or an unknown format."""
    kind = sniff(store_for(ref.uri).read_range(ref, 0, HEAD_BYTES))
    if kind in ("vrt", "xml"):
        raise DataError(f"{ref.uri}: a VRT or GDAL XML dataset in object storage would make "
                        "GDAL fetch the sources it names; not read", code="source_refused",
                        path=ref.uri)
    if kind == "unknown":
        raise DataError(f"{ref.uri}: not a raster format CACH reads ({FORMATS_TEXT})",
                        code="not_a_raster", path=ref.uri)
    return kind


def local_kind(real: str) -> str:
    """The format of a local file about to be opened (a :data:`DRIVERS` key), after the checks
    that need no walk: a regular file (tested before any read: a pipe would block), a format in
    the allowlist and no redirection, plain sidecars. ``DataError`` naming the file otherwise;
    a VRT's sources are :func:`check_source`'s business."""
    try:
        _regular(real, top=True)
        kind = _kind_of(real, real, top=True)
        _check_sidecars(real)
    except _Refused as refused:
        raise DataError(f"{real}: {refused}", code=refused.code, path=real) from None
    except OSError as err:
        raise unreadable(real, err) from err
    return kind


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


# --- approvals -----------------------------------------------------------------------------------
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


def approved(real: str) -> bool:
    """True when the VRT at the real path ``real`` passed :func:`check_source` in this process
    and has not changed since (same size and mtime)."""
    try:
        st = os.stat(real)
    except OSError:
        return False
    return _APPROVED.get(real) == (st.st_size, st.st_mtime_ns)
