"""Hostile inputs below the worker: query images that are not files, decompression bombs, and
(in the same spirit) configuration from the environment that no machine can honour."""

from __future__ import annotations

import os
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest

from model_runtime.errors import DataError
from model_runtime.services.queries import MAX_QUERY_PIXELS, read_query_image


def _png_header_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width x height, all black: tiny on disk, huge when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


def test_a_400_megapixel_png_is_refused_naming_the_cap(tmp_path):
    bomb = _png_header_bomb(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(DataError) as info:
        read_query_image(bomb)
    assert info.value.code == "image_unreadable"
    assert "100 megapixels" in str(info.value)
    assert info.value.details["max_pixels"] == MAX_QUERY_PIXELS


def test_a_png_just_over_the_cap_below_pillows_own_limit_is_refused(tmp_path):
    bomb = _png_header_bomb(tmp_path / "big.png", 10_100, 10_000)  # 101 MP
    with pytest.raises(DataError) as info:
        read_query_image(bomb)
    assert info.value.code == "image_unreadable" and "101 megapixels" in str(info.value)


def test_a_small_png_still_reads(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "ok.png")
    assert read_query_image(tmp_path / "ok.png").shape == (30, 40, 3)


def test_a_fifo_is_not_a_regular_file_and_is_not_opened(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(DataError) as info:
        read_query_image(fifo)
    assert info.value.code == "image_unreadable"
    assert "not a regular file" in str(info.value) and "does not exist" not in str(info.value)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_not_a_regular_file(device):
    with pytest.raises(DataError) as info:
        read_query_image(device)
    assert info.value.code == "image_unreadable" and "not a regular file" in str(info.value)


def test_a_folder_and_a_missing_file_say_what_they_are(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_query_image(tmp_path)
    with pytest.raises(DataError) as info:
        read_query_image(tmp_path / "nope.png")
    assert info.value.code == "file_not_found"


def test_a_nul_byte_in_the_image_path_is_a_coded_error():
    with pytest.raises(DataError) as info:
        read_query_image("/tmp/a\x00b.png")
    assert info.value.code == "image_unreadable"


# --- the environment -----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1000000000", "9" * 5000, "1025"])
def test_encoder_threads_beyond_the_cap_are_a_configuration_error(monkeypatch, value):
    from model_runtime.errors import ConfigError
    from model_runtime.model.compiled import MAX_ENV_COUNT, encoder_threads

    monkeypatch.setenv("CACH_ENCODER_THREADS", value)
    with pytest.raises(ConfigError) as info:
        encoder_threads()
    assert info.value.code == "bad_value" and f"than the {MAX_ENV_COUNT}" in str(info.value)
    assert len(str(info.value)) < 200
    monkeypatch.setenv("CACH_ENCODER_THREADS", str(MAX_ENV_COUNT))
    assert encoder_threads() == MAX_ENV_COUNT


@pytest.mark.parametrize("url", ["notaurl", "ftp://host", "http://", "http://h:99999", "s3.example.org",
                                 "http://host name"])
def test_an_endpoint_that_is_not_an_http_url_is_a_configuration_error(url):
    from model_runtime.errors import ConfigError
    from model_runtime.raster import remote

    with pytest.raises(ConfigError) as info:
        remote.endpoint_url({"AWS_ENDPOINT_URL": url})
    assert info.value.code == "bad_value" and "AWS_ENDPOINT_URL must be" in str(info.value)
    with pytest.raises(ConfigError):
        remote.client({"AWS_ENDPOINT_URL": url})  # before boto3 is even imported
    assert remote.endpoint_url({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})


# --- object storage keys -------------------------------------------------------------------------
class _FakeS3:
    """Enough of a boto3 client for a listing."""

    def __init__(self, keys):
        self.keys = keys

    def get_paginator(self, name):
        keys = self.keys

        class _Pages:
            def paginate(self, Bucket, Prefix):  # noqa: N803 - boto3's names
                import datetime

                now = datetime.datetime(2026, 1, 1)
                yield {"Contents": [{"Key": k, "Size": 10, "ETag": '"e"', "LastModified": now}
                                    for k in keys if k.startswith(Prefix)]}

        return _Pages()


def test_a_key_that_climbs_out_of_its_prefix_is_listed_as_skipped(monkeypatch):
    from model_runtime.raster import remote

    keys = ["ortho/a.tif", "ortho/../../escape.tif", "ortho/./b.tif", "ortho//c.tif",
            "ortho/.hidden.tif", "ortho/readme.txt"]
    monkeypatch.setattr(remote, "client", lambda environ=None: _FakeS3(keys))
    refs, skipped = remote.S3Store().list_sources("s3://bucket/ortho")
    assert [r.uri for r in refs] == ["s3://bucket/ortho/a.tif"]
    by_path = {s.path: s for s in skipped}
    assert set(by_path) == {"s3://bucket/ortho/../../escape.tif", "s3://bucket/ortho/./b.tif",
                            "s3://bucket/ortho//c.tif"}
    escape = by_path["s3://bucket/ortho/../../escape.tif"]
    assert escape.code == "source_refused" and "'..'" in escape.reason
    refused: list = []
    assert remote.list_objects("s3://bucket/ortho/../../escape.tif", refused=refused) == []
    assert refused and refused[0][0] == "s3://bucket/ortho/../../escape.tif"


# --- index folders -------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["/proc/cach-index", "/proc/self/fdinfo", "/sys/x", "/dev/shm/../x"])
def test_an_index_cannot_live_in_a_system_folder(where):
    from model_runtime.errors import ConfigError
    from model_runtime.index.lock import IndexLock

    with pytest.raises(ConfigError) as info, IndexLock(where):
        pass
    assert info.value.code == "bad_value" and "system folder" in str(info.value)


def test_damaged_adapted_heads_are_reported_as_damaged(tmp_path):
    from model_runtime.model.heads import index_heads_dir
    from model_runtime.services.indexes import IndexService

    own = index_heads_dir(tmp_path)
    own.mkdir(parents=True)
    name = "cach-effnetlite0-minilm-64-adapted-20260101-000000.safetensors"
    (own / name).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken")
    model = {"backbone": "effnetlite0-minilm", "bits": 64, "heads_sha": "ab" * 32,
             "heads": name}
    with pytest.raises(DataError) as info:
        IndexService("effnetlite0-minilm").heads_of(model, tmp_path)
    assert info.value.code == "heads_unreadable"
    assert "damaged" in str(info.value) and "does not have" not in str(info.value)


# --- a full disk ---------------------------------------------------------------------------------
def test_a_full_disk_while_adding_files_leaves_the_last_good_state_searchable(
        sample_folder, tmp_path, encoder, monkeypatch, FakeEncoder):
    """A second run that adds a file fails on a full disk (its units, then the faiss file):
    the index still searches everything it held before, and the next run completes it."""
    import shutil

    from model_runtime.errors import DiskFullError
    from model_runtime.index import BuildOptions, binary, build_index, open_index
    from model_runtime.index.store import Store
    from model_runtime.raster.tiling import TilingOptions

    files = sorted(sample_folder.rglob("*.tif"))
    assert len(files) >= 2
    later = tmp_path / "later.tif"
    shutil.move(str(files[-1]), later)
    idx = tmp_path / "idx"
    opts = BuildOptions(tiling=TilingOptions(tile_size=128))
    build_index(idx, [str(sample_folder)], encoder, opts)
    with open_index(idx) as before:
        held = before.store.count_tiles()
    shutil.move(str(later), files[-1])  # a file added since: the next run encodes it

    def full(*args, **kwargs):
        raise DiskFullError("The disk is full (test).")

    monkeypatch.setattr(binary.BinaryIndex, "write", full)  # the faiss file cannot be written
    original = Store.commit_unit
    calls = []

    def commit_then_full(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise sqlite3.OperationalError("database or disk is full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "commit_unit", commit_then_full)
    with pytest.raises(DiskFullError):
        build_index(idx, [str(sample_folder)], FakeEncoder(), opts)
    with open_index(idx) as after:  # searchable: the codes are rebuilt from the store
        assert after.store.count_tiles() >= held
        assert after.pending_files == (1 if len(calls) > 1 else 0)  # a unit failed, or the file
        assert after.codes.ntotal == after.store.count_tiles()
    monkeypatch.undo()
    summary = build_index(idx, [str(sample_folder)], FakeEncoder(), opts)
    with open_index(idx) as done:
        assert done.pending_files == 0 and done.store.count_tiles() == summary.tiles > held
