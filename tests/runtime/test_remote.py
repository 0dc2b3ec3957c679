"""Object storage against a real S3-compatible server on loopback (moto_server, IAM enforced):
listing by key + size + ETag without reading objects, one clear message for wrong credentials
or an unreachable endpoint, and windowed COG reads through /vsis3/ equal to reads from disk."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("boto3", reason="pip install -r requirements/s3.txt")

import s3server  # noqa: E402  (tests/runtime is on sys.path)

from model_runtime.errors import ConfigError, DataError  # noqa: E402
from model_runtime.raster import remote  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COG = "rasterio/cogeo.tif"
NAIP = "naip/m_4709963_se_14_1_20200831.tif"


@pytest.fixture(scope="module")
def server(tmp_path_factory, geotiff_dir):
    srv = s3server.start(tmp_path_factory.mktemp("s3"))
    s3 = srv.client()
    for key, name in [("archive/cogeo.tif", COG), ("archive/sub/naip.tif", NAIP),
                      ("archive/.hidden/x.tif", COG), ("archive2/other.tif", COG)]:
        s3.upload_file(str(geotiff_dir / name), s3server.BUCKET, key)
    s3.put_object(Bucket=s3server.BUCKET, Key="archive/readme.txt", Body=b"not a raster")
    yield srv
    srv.stop()


@pytest.fixture
def aws(server, monkeypatch):
    """The standard AWS environment pointing at the server, and nothing else from the host."""
    for name in remote.AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return server.env()


def test_paths_both_forms():
    assert remote.split("s3://bucket/a/b.tif") == ("bucket", "a/b.tif")
    assert remote.split("/vsis3/bucket/a/b.tif") == ("bucket", "a/b.tif")
    assert remote.to_uri("/vsis3/bucket/a") == "s3://bucket/a"
    assert remote.to_gdal("s3://bucket/a") == "/vsis3/bucket/a"
    assert remote.is_remote("s3://b/k") and remote.is_remote("/vsis3/b/k")
    assert not remote.is_remote("/data/s3://x") and not remote.is_remote("rel/path.tif")
    with pytest.raises(ConfigError, match="no bucket"):
        remote.split("s3:///key")


def test_gdal_mapping_from_standard_variables():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "AK",
           "AWS_SECRET_ACCESS_KEY": "SK", "AWS_DEFAULT_REGION": "eu-west-3",
           "AWS_CA_BUNDLE": "/etc/ca.pem"}
    opts = remote.gdal_env_for("s3://bucket/x.tif", env)
    assert opts["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert opts["AWS_HTTPS"] == "NO" and opts["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert opts["AWS_REGION"] == "eu-west-3" and opts["CURL_CA_BUNDLE"] == "/etc/ca.pem"
    assert (opts["AWS_ACCESS_KEY_ID"], opts["AWS_SECRET_ACCESS_KEY"]) == ("AK", "SK")
    assert opts["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    https = remote.gdal_env_for("/vsis3/b/k", {"AWS_ENDPOINT_URL_S3": "https://s3.example.org",
                                               "AWS_ENDPOINT_URL": "http://ignored:1"})
    assert (https["AWS_S3_ENDPOINT"], https["AWS_HTTPS"]) == ("s3.example.org", "YES")
    plain_aws = remote.gdal_env_for("s3://b/k", {"AWS_NO_SIGN_REQUEST": "yes"})
    assert "AWS_S3_ENDPOINT" not in plain_aws and plain_aws["AWS_NO_SIGN_REQUEST"] == "YES"
    assert remote.gdal_env_for("/data/x.tif", env) == {}
    assert remote.worker_environment(["/data/x.tif"], env) == {}
    worker = remote.worker_environment(["/data/x.tif", "s3://b/k"], env)
    assert worker["AWS_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL"] and "AWS_S3_ENDPOINT" in worker


def test_list_prefix_identity_without_reading(aws, server, geotiff_dir):
    before = len(server.requests())
    objs = remote.list_objects(f"s3://{s3server.BUCKET}/archive")
    assert [o.uri for o in objs] == [f"s3://{s3server.BUCKET}/archive/cogeo.tif",
                                     f"s3://{s3server.BUCKET}/archive/sub/naip.tif"]
    cog = objs[0]
    data = (geotiff_dir / COG).read_bytes()
    assert cog.size == len(data) and cog.etag == hashlib.md5(data).hexdigest()
    assert cog.gdal_path == f"/vsis3/{s3server.BUCKET}/archive/cogeo.tif"
    # the same prefix through /vsis3/, with a trailing slash: the same objects
    assert remote.list_objects(f"/vsis3/{s3server.BUCKET}/archive/") == objs
    # one object named directly
    assert remote.list_objects(cog.uri) == [cog]
    # listing never fetched an object's bytes: only LIST and HEAD requests
    new = server.requests()[before:]
    assert new and not any('"GET /' + s3server.BUCKET + "/archive/" in line for line in new), new


def test_changed_object_gets_new_etag(aws, server, geotiff_dir, tmp_path):
    s3 = server.client()
    key = "changing/a.tif"
    s3.upload_file(str(geotiff_dir / COG), s3server.BUCKET, key)
    first = remote.list_objects(f"s3://{s3server.BUCKET}/changing")[0]
    data = bytearray((geotiff_dir / COG).read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    s3.put_object(Bucket=s3server.BUCKET, Key=key, Body=bytes(data))
    second = remote.list_objects(f"s3://{s3server.BUCKET}/changing")[0]
    assert second.size == first.size and second.etag != first.etag


@pytest.mark.parametrize("override", [{"AWS_ACCESS_KEY_ID": "AKIANOTAKEY"},
                                      {"AWS_SECRET_ACCESS_KEY": "wrong-secret"}])
def test_wrong_credentials_one_clear_message(aws, server, monkeypatch, override):
    for name, value in override.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DataError) as info:
        remote.list_objects(f"s3://{s3server.BUCKET}/archive")
    err = info.value
    assert err.code == "remote_denied"
    assert "refused the credentials" in str(err) and "AWS_ACCESS_KEY_ID" in str(err)
    assert "\n" not in str(err) and "Traceback" not in str(err)


def test_missing_bucket_and_unreachable_endpoint(aws, monkeypatch):
    with pytest.raises(DataError) as info:
        remote.list_objects("s3://no-such-bucket-here/x")
    assert info.value.code == "file_not_found"
    closed = s3server._free_port()  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    with pytest.raises(DataError) as info:
        remote.list_objects(f"s3://{s3server.BUCKET}/archive")
    assert info.value.code == "remote_unreachable" and f"127.0.0.1:{closed}" in str(info.value)


def test_windowed_cog_read_equals_disk(aws, geotiff_dir):
    import rasterio
    from rasterio.windows import Window

    from model_runtime.raster.tiling import TilingOptions, read_window

    uri = f"s3://{s3server.BUCKET}/archive/cogeo.tif"
    local = geotiff_dir / COG
    with remote.gdal_session(uri):
        with rasterio.open(remote.to_gdal(uri)) as src:
            remote_px = src.read(window=Window(300, 200, 256, 256))
        remote_tile = read_window(remote.to_gdal(uri), (512, 512, 256, 256), TilingOptions())
    with rasterio.open(local) as src:
        assert np.array_equal(remote_px, src.read(window=Window(300, 200, 256, 256)))
    assert np.array_equal(remote_tile, read_window(local, (512, 512, 256, 256), TilingOptions()))


WORKER = """
import json, sys, threading
import numpy as np, rasterio
from rasterio.windows import Window
from model_runtime.raster import remote
env, path = json.loads(sys.argv[1]), sys.argv[2]
remote.apply_environment(env)
out = {}
def read():
    with rasterio.open(path) as src:
        out["sum"] = int(src.read(1, window=Window(0, 0, 128, 128)).astype(np.int64).sum())
t = threading.Thread(target=read); t.start(); t.join(60)
print(out["sum"])
"""


def test_worker_environment_in_a_fresh_process(aws, geotiff_dir):
    """What a Ray worker gets: the environment passed explicitly, any thread reads /vsis3/."""
    import rasterio
    from rasterio.windows import Window

    uri = f"s3://{s3server.BUCKET}/archive/cogeo.tif"
    env = remote.worker_environment([uri], aws)
    clean = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", WORKER, json.dumps(env), remote.to_gdal(uri)],
                         capture_output=True, text=True, timeout=120, env=clean, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    with rasterio.open(geotiff_dir / COG) as src:
        expected = int(src.read(1, window=Window(0, 0, 128, 128)).astype(np.int64).sum())
    assert int(res.stdout.split()[-1]) == expected


def test_without_boto3_one_clear_message():
    code = ("import sys; sys.modules['boto3'] = None\n"
            "from model_runtime.raster import remote\n"
            "try:\n    remote.list_objects('s3://bucket/x')\n"
            "except Exception as e:\n    print(type(e).__name__, e.code, e)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert "ConfigError extra_missing" in res.stdout and "requirements/s3.txt" in res.stdout


def test_sources_list_check_and_read_through_the_store(aws, server, geotiff_dir):
    """What indexing does with a named s3:// prefix: sources.list_sources lists it (ETag as
    version), check_source reads 1 KiB, open_raster reads windows equal to the file on disk;
    GDAL fetches the named objects only."""
    import threading

    import rasterio
    from rasterio.windows import Window

    from model_runtime.raster import checks, gdal_open, refs, sources
    from model_runtime.raster.tiling import TilingOptions, read_window

    found, skipped = sources.list_sources([f"s3://{s3server.BUCKET}/archive"])
    assert not skipped and [r.name for r in found] == ["cogeo.tif", "naip.tif"]
    cog = found[0]
    assert cog.is_remote and cog.version == hashlib.md5((geotiff_dir / COG).read_bytes()
                                                        ).hexdigest()
    assert cog.gdal_path == f"/vsis3/{s3server.BUCKET}/archive/cogeo.tif"
    assert checks.check_source(cog, []) == []
    assert refs.quick_signature(cog) == f"etag:{cog.version}"
    out: dict = {}

    def read() -> None:  # a reader thread, as the local executor's
        with gdal_open.open_raster(cog.gdal_path) as src:
            out["px"] = src.read(window=Window(100, 50, 64, 64))

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(60)
    with rasterio.open(geotiff_dir / COG) as src:
        assert np.array_equal(out["px"], src.read(window=Window(100, 50, 64, 64)))
    assert np.array_equal(read_window(cog.gdal_path, (256, 256, 256, 256), TilingOptions()),
                          read_window(geotiff_dir / COG, (256, 256, 256, 256), TilingOptions()))
    fetched = {line.split()[6] for line in server.requests() if '"GET /' in line}
    assert not any("archive2" in f or ".hidden" in f for f in fetched), fetched


def test_vrt_in_object_storage_is_refused(aws, server):
    from model_runtime.raster import checks, sources

    s3 = server.client()
    s3.put_object(Bucket=s3server.BUCKET, Key="vrts/pull.tif",
                  Body=b'<VRTDataset rasterXSize="1" rasterYSize="1"></VRTDataset>')
    refs, _ = sources.list_sources([f"s3://{s3server.BUCKET}/vrts"])
    with pytest.raises(DataError) as info:
        checks.check_source(refs[0], [])
    assert info.value.code == "source_refused"


def test_empty_prefix_is_named(aws):
    from model_runtime.raster import sources

    refs, skipped = sources.list_sources([f"s3://{s3server.BUCKET}/nothing-here"])
    assert refs == [] and skipped[0].code == "file_not_found"
    assert "no rasters" in skipped[0].reason
