"""Hostile inputs below the worker: query images that are not files, decompression bombs, and
(in the same spirit) configuration from the environment that no machine can honour."""

from __future__ import annotations

import os
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
