"""Object storage (Amazon S3 and S3-compatible servers): list a prefix, identify objects without
reading them, and read cloud-optimised GeoTIFFs by windowed reads through GDAL's ``/vsis3/``.

* A top-level path ``s3://bucket/prefix`` or ``/vsis3/bucket/prefix`` is a remote source set;
  the index stores ``s3://bucket/key`` (:func:`to_uri`) and GDAL reads ``/vsis3/bucket/key``
  (:func:`to_gdal`). This module is the only place indexing talks to the network, and only for
  paths the user named (a reference to the network from inside a file is refused elsewhere).
* Identity of an object = key + size + ETag, from the listing (one LIST page per 1,000 objects;
  never a GET of the object): a changed object gets a new ETag and is re-encoded.
* Credentials and endpoint come from the standard AWS environment (``AWS_ENDPOINT_URL``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
  ``AWS_PROFILE`` ...). They are passed to workers (:func:`worker_environment`) and never
  stored in an index. GDAL reads its own variables; :func:`gdal_env_for` maps them
  (``docs/ray.md`` has the table).

Listing, checking and opening reach all of this through :class:`S3Store`, which
``raster/stores.py`` makes on the first ``s3://`` path (its ``STORE_FACTORIES``; this module
imports nothing of that registry): listing, 1 KiB ranged reads for the format checks, and opening
(a :func:`gdal_session` held in the reading thread while the dataset is open; GDAL may fetch that
one object only). Ray workers get the
environment explicitly (:func:`worker_environment`, :func:`apply_environment`).

boto3 is an optional extra (``requirements/s3.txt``); without it an ``s3://`` path gives one
clear message and local indexing is untouched.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from model_runtime.errors import ConfigError, DataError
from model_runtime.protocol import Skipped
from model_runtime.raster.refs import SourceRef

S3_PREFIXES = ("s3://", "/vsis3/")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".png", ".jpg", ".jpeg", ".img")

#: the standard AWS variables a worker needs (read by boto3, and by GDAL under the same names)
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_NO_SIGN_REQUEST",
    "AWS_CA_BUNDLE", "AWS_REQUEST_PAYER",
)
#: GDAL options that carry credentials: rasterio accepts them only through an AWSSession
_CREDENTIAL_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                       "AWS_REGION", "AWS_S3_ENDPOINT", "AWS_NO_SIGN_REQUEST",
                       "AWS_REQUEST_PAYER", "AWS_PROFILE")
#: how GDAL behaves on object storage, whatever the credentials
GDAL_REMOTE_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # never LIST a prefix to open one file
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "60",
    "VSI_CACHE": "TRUE",
}

INSTALL_HINT = "pip install -r requirements/s3.txt (boto3)"


@dataclass(frozen=True)
class RemoteObject:
    """One listed object: ``uri`` (``s3://bucket/key``), ``size`` in bytes, ``etag`` (quotes
    stripped; the version an index records) and ``mtime`` (LastModified, seconds)."""

    uri: str
    size: int
    etag: str
    mtime: float

    @property
    def gdal_path(self) -> str:
        return to_gdal(self.uri)


# --------------------------------------------------------------------------- paths


def is_remote(path: str | os.PathLike) -> bool:
    """True for ``s3://`` and ``/vsis3/`` paths."""
    return str(path).startswith(S3_PREFIXES)


def split(path: str | os.PathLike) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://`` or ``/vsis3/`` path (key may be empty)."""
    text = str(path)
    for prefix in S3_PREFIXES:
        if text.startswith(prefix):
            bucket, _, key = text[len(prefix):].partition("/")
            if not bucket:
                raise ConfigError(f"{text}: no bucket name (expected s3://bucket/prefix).",
                                  code="bad_value")
            return bucket, key
    raise ConfigError(f"{text} is not an s3:// or /vsis3/ path.", code="bad_value")


def to_uri(path: str | os.PathLike) -> str:
    """The form an index stores: ``s3://bucket/key``."""
    bucket, key = split(path)
    return f"s3://{bucket}/{key}"


def to_gdal(path: str | os.PathLike) -> str:
    """The form GDAL opens: ``/vsis3/bucket/key``."""
    bucket, key = split(path)
    return f"/vsis3/{bucket}/{key}"


# --------------------------------------------------------------------------- environment


def endpoint_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint the user set (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``): an
    ``http(s)://host[:port][/path]`` URL, else a configuration error naming the variable."""
    env = os.environ if environ is None else environ
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        url = env.get(name)
        if url:
            _check_endpoint(name, url)
            return url
    return None


def _check_endpoint(name: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number 0-65535)
    except ValueError:
        ok = False
    if not ok or any(c.isspace() or ord(c) < 32 for c in url):
        shown = url if len(url) <= 80 else url[:77] + "..."
        raise ConfigError(f"{name} must be an http:// or https:// URL with a host name, e.g. "
                          f"https://s3.example.org or http://127.0.0.1:9000, not {shown!r}.",
                          code="bad_value", variable=name)


def aws_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The standard AWS variables that are set (what a worker process needs)."""
    env = os.environ if environ is None else environ
    return {k: env[k] for k in AWS_VARIABLES if env.get(k)}


def gdal_env_for(uri: str | os.PathLike, environ: Mapping[str, str] | None = None
                 ) -> dict[str, str]:
    """GDAL configuration options that let ``/vsis3/`` read ``uri`` as boto3 would, from the
    standard AWS variables ({} for a local path). ``AWS_ENDPOINT_URL=http://host:port`` becomes
    ``AWS_S3_ENDPOINT=host:port``, ``AWS_HTTPS=NO`` and ``AWS_VIRTUAL_HOSTING=FALSE``
    (path-style, as S3-compatible servers need); region, keys, token, profile and unsigned
    access keep their names (``AWS_DEFAULT_REGION`` -> ``AWS_REGION``); ``AWS_CA_BUNDLE`` ->
    ``CURL_CA_BUNDLE``."""
    if not is_remote(uri):
        return {}
    env = os.environ if environ is None else environ
    opts = dict(GDAL_REMOTE_DEFAULTS)
    url = endpoint_url(env)
    if url:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        opts["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
        opts["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
        opts["AWS_VIRTUAL_HOSTING"] = "FALSE"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        opts["AWS_REGION"] = region
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_REQUEST_PAYER"):
        if env.get(name):
            opts[name] = env[name]
    if str(env.get("AWS_NO_SIGN_REQUEST", "")).upper() in ("YES", "TRUE", "1"):
        opts["AWS_NO_SIGN_REQUEST"] = "YES"
    if env.get("AWS_CA_BUNDLE"):
        opts["CURL_CA_BUNDLE"] = env["AWS_CA_BUNDLE"]
    return opts


def worker_environment(uris: list[str], environ: Mapping[str, str] | None = None
                       ) -> dict[str, str]:
    """Environment variables for a worker process that reads ``uris``: the standard AWS ones
    plus their GDAL mapping ({} when nothing is remote). Set them with :func:`apply_environment`
    when the worker starts, so every thread of it reads ``/vsis3/`` the same way."""
    remote = [u for u in uris if is_remote(u)]
    if not remote:
        return {}
    return {**aws_environment(environ), **gdal_env_for(remote[0], environ)}


def apply_environment(env: Mapping[str, str]) -> None:
    """Set ``env`` in this process (a worker's first act; never done in the caller's process)."""
    os.environ.update({k: str(v) for k, v in env.items()})


@contextlib.contextmanager
def gdal_session(uri: str | os.PathLike, environ: Mapping[str, str] | None = None
                 ) -> Iterator[None]:
    """``with gdal_session(uri): rasterio.open(to_gdal(uri))`` -- the options of
    :func:`gdal_env_for` in force for this thread (nothing for a local path), and GDAL allowed
    to fetch that one object only (``CPL_VSIL_CURL_ALLOWED_FILENAME``: nothing a file names,
    such as an external overview, reaches the network). Credentials go through rasterio's
    ``AWSSession``, which is how rasterio accepts them."""
    opts = gdal_env_for(uri, environ)
    if not opts:
        yield
        return
    opts["CPL_VSIL_CURL_ALLOWED_FILENAME"] = to_gdal(uri)
    import rasterio
    from rasterio.session import AWSSession

    creds = {k: opts.pop(k) for k in _CREDENTIAL_OPTIONS if k in opts}
    session = AWSSession(
        aws_unsigned=creds.get("AWS_NO_SIGN_REQUEST") == "YES",
        aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=creds.get("AWS_SESSION_TOKEN"),
        region_name=creds.get("AWS_REGION"), profile_name=creds.get("AWS_PROFILE"),
        endpoint_url=creds.get("AWS_S3_ENDPOINT"),
        requester_pays=creds.get("AWS_REQUEST_PAYER") == "requester")
    with rasterio.Env(session=session, **opts):
        yield


# --------------------------------------------------------------------------- listing


def client(environ: Mapping[str, str] | None = None):
    """A boto3 S3 client on the user's endpoint and credentials (standard AWS environment)."""
    env = os.environ if environ is None else environ
    url = endpoint_url(env)  # a malformed endpoint is the first thing to say, boto3 or not
    try:
        import boto3
        from botocore.config import Config
    except ImportError as err:
        raise ConfigError(f"s3:// paths need boto3, which is not installed: {INSTALL_HINT}.",
                          code="extra_missing") from err
    session = boto3.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        profile_name=env.get("AWS_PROFILE") or None)
    unsigned = str(env.get("AWS_NO_SIGN_REQUEST", "")).upper() in ("YES", "TRUE", "1")
    config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3},
                    **({"signature_version": _unsigned()} if unsigned else {}))
    return session.client("s3", endpoint_url=url, config=config)


def _unsigned():
    from botocore import UNSIGNED

    return UNSIGNED


_DENIED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
           "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed", "403"}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}


def explain(err: BaseException, path: str, environ: Mapping[str, str] | None = None
            ) -> Exception:
    """One clear message for what object storage answered (or did not)."""
    from botocore import exceptions as bex

    where = endpoint_url(environ) or "the default AWS endpoint"
    if isinstance(err, bex.NoCredentialsError):
        return DataError(f"{path}: no S3 credentials found. Set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or AWS_NO_SIGN_REQUEST=YES "
                         "for a public bucket).", code="remote_denied")
    if isinstance(err, (bex.EndpointConnectionError, bex.ConnectTimeoutError,
                        bex.ReadTimeoutError)):
        return DataError(f"{path}: cannot reach the S3 endpoint {where} ({err}). Check "
                         "AWS_ENDPOINT_URL and the network.", code="remote_unreachable")
    if isinstance(err, bex.ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in _DENIED:
            return DataError(f"{path}: {where} refused the credentials ({code}). Check "
                             "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), "
                             "and that this key may list and read the bucket.",
                             code="remote_denied")
        if code in _MISSING:
            return DataError(f"{path}: no such bucket or object at {where} ({code}).",
                             code="file_not_found")
        return DataError(f"{path}: S3 error {code} at {where}.", code="data_unreadable")
    return DataError(f"{path}: S3 request failed ({err}).", code="remote_unreachable")


def _listed(bucket: str, item: dict) -> RemoteObject:
    return RemoteObject(f"s3://{bucket}/{item['Key']}", int(item["Size"]),
                        str(item.get("ETag", "")).strip('"'),
                        item["LastModified"].timestamp() if item.get("LastModified") else 0.0)


def _wanted(key: str, suffixes: tuple[str, ...]) -> bool:
    """A raster by its name, not hidden (no part starts with a dot), not a folder marker."""
    parts = key.split("/")
    return (key.lower().endswith(suffixes) and not key.endswith("/")
            and not any(p.startswith(".") for p in parts))


def refused_key(key: str) -> str | None:
    """Why a raster's key cannot be an index source, None when it can: a key with ``.`` or
    ``..`` or empty segments would name another object (or bucket) once GDAL normalises the
    ``/vsis3/`` path; control characters cannot be written to a layer or a log honestly."""
    parts = key.split("/")
    if any(p in (".", "..") for p in parts):
        return "its key has '.' or '..' segments, which would read another object"
    if any(not p for p in parts):
        return "its key has an empty segment ('//' or a leading '/')"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "its key holds control characters"
    return None


def list_objects(path: str, suffixes: tuple[str, ...] = RASTER_SUFFIXES,
                 environ: Mapping[str, str] | None = None,
                 refused: list[tuple[str, str]] | None = None) -> list[RemoteObject]:
    """The rasters under ``path`` (``s3://bucket/prefix`` or ``/vsis3/...``), sorted by URI.

    A path that names one object lists that object; otherwise it is a folder (``prefix/``).
    Rasters whose key cannot be a source (:func:`refused_key`) are left out and, when
    ``refused`` is given, appended to it as ``(uri, reason)``. Raises ``DataError`` with one
    clear message for wrong credentials, a missing bucket or an unreachable endpoint."""
    from botocore import exceptions as bex

    bucket, key = split(path)
    s3 = client(environ)
    try:
        if key and not key.endswith("/") and key.lower().endswith(suffixes):
            if refused_key(key):
                if refused is not None:
                    refused.append((f"s3://{bucket}/{key}", refused_key(key) or ""))
                return []
            head = s3.head_object(Bucket=bucket, Key=key)
            return [RemoteObject(f"s3://{bucket}/{key}", int(head["ContentLength"]),
                                 str(head.get("ETag", "")).strip('"'),
                                 head["LastModified"].timestamp())]
        prefix = key if not key or key.endswith("/") else key + "/"
        found = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                why = refused_key(item["Key"]) if item["Key"].lower().endswith(suffixes) else None
                if why:
                    if refused is not None:
                        refused.append((f"s3://{bucket}/{item['Key']}", why))
                elif _wanted(item["Key"], suffixes):
                    found.append(_listed(bucket, item))
    except (bex.BotoCoreError, bex.ClientError) as err:
        raise explain(err, str(path), environ) from err
    return sorted(found, key=lambda o: o.uri)


# --------------------------------------------------------------------------- the s3 store


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def shared_client(environ: Mapping[str, str] | None = None):
    """One client per endpoint and key in this process (boto3 clients are thread-safe)."""
    env = os.environ if environ is None else environ
    key = (endpoint_url(env), env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY"),
           env.get("AWS_SESSION_TOKEN"), env.get("AWS_PROFILE"), env.get("AWS_REGION"))
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = client(environ)
        return _CLIENTS[key]


class RemoteDataset:
    """An open ``/vsis3/`` dataset with its GDAL session held in this thread until closed;
    ``with`` gives the rasterio dataset, attributes are forwarded too."""

    def __init__(self, path: str, driver: str | None) -> None:
        import rasterio

        self._session = gdal_session(path)
        self._session.__enter__()
        try:
            self._dataset = rasterio.open(to_gdal(path), driver=driver)
        except Exception as err:
            self._session.__exit__(None, None, None)
            text = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise DataError(f"{to_uri(path)}: cannot be opened as a raster ({text})",
                            code="data_unreadable", path=to_uri(path)) from err

    def __enter__(self):
        return self._dataset

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)

    def close(self) -> None:
        if self._session is not None:
            try:
                self._dataset.close()
            finally:
                self._session.__exit__(None, None, None)
                self._session = None


class S3Store:
    """The ``s3://`` store (a ``RemoteStore`` of ``raster/stores.py``): listing by key + size +
    ETag, ranged reads for format checks, and opening for windowed reads. The network is used
    only for the paths a user named."""

    def list_sources(self, uri: str) -> tuple[list[SourceRef], list[Skipped]]:
        refused: list[tuple[str, str]] = []
        objects = list_objects(uri, refused=refused)
        skipped = [Skipped(u, f"{u}: not indexed: {why}", "source_refused") for u, why in refused]
        if not objects and not skipped:
            return [], [Skipped(to_uri(uri), f"{to_uri(uri)}: no rasters (" +
                                ", ".join(RASTER_SUFFIXES) + ") under this prefix",
                                "file_not_found")]
        return [SourceRef(o.uri, o.size, o.etag, o.mtime) for o in objects], skipped

    def read_range(self, ref: SourceRef, start: int, length: int) -> bytes:
        from botocore import exceptions as bex

        bucket, key = split(ref.uri)
        try:
            resp = shared_client().get_object(Bucket=bucket, Key=key,
                                              Range=f"bytes={start}-{start + length - 1}")
            return resp["Body"].read()
        except (bex.BotoCoreError, bex.ClientError) as err:
            raise explain(err, to_uri(ref.uri)) from err

    def open(self, ref: SourceRef, driver: str | None = None) -> RemoteDataset:
        return RemoteDataset(ref.uri, driver)
