"""The cheaper read path gives the tiles the plain read gave: full-resolution window, mask,
bands, stretch, one bilinear resize. Overview levels and JPEG draft decoding only change tiles
that are downsampled 2x or more, and only by resampling noise."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import Window

from model_runtime.paths import SAMPLES_DIR, data_root
from model_runtime.raster import tiling
from model_runtime.raster.tiling import TilingOptions, iter_tiles, raster_info, read_window


def reference_tile(path, info, window, out) -> np.ndarray:
    """The plain read: the full-resolution window of the chosen bands, stretched, masked
    pixels black, one bilinear resize (what tiling did before overviews and Pillow JPEGs)."""
    col, row, width, height = window
    with rasterio.open(path) as src:
        win = Window(col, row, width, height)
        data = src.read(list(info.bands), window=win)
        mask = tiling._mask(src, src.read(sorted(set(info.bands)), window=win), win,
                            (height, width))
        if info.palette:
            lut = np.zeros((256, 3), np.uint8)
            for value, colour in src.colormap(1).items():
                lut[value] = colour[:3]
            rgb = lut[data[0]]
        else:
            rgb = np.ascontiguousarray(tiling._to_uint8(data, info).transpose(1, 2, 0))
    rgb[~mask] = 0
    if (height, width) != out:
        rgb = np.asarray(Image.fromarray(rgb).resize((out[1], out[0]), Image.BILINEAR))
    return rgb


def _rasters() -> list:
    found = sorted(SAMPLES_DIR.glob("*.tif"))
    shared = data_root() / "geotiff"
    if shared.is_dir():
        found += sorted(shared.rglob("*.tif"))
    return found


@pytest.mark.parametrize("tile_size", [256, 96])
def test_tiles_at_scale_one_equal_the_plain_read(tile_size):
    options = TilingOptions(tile_size=tile_size, min_valid=0.0)
    checked = 0
    for path in _rasters() if tile_size == 256 else sorted(SAMPLES_DIR.glob("*.tif")):
        info = raster_info(path, options)
        for rgb, tile in iter_tiles(path, options, info=info):
            ref = reference_tile(path, info, tile.window, (224, 224))
            assert rgb.dtype == np.uint8 and rgb.shape == (224, 224, 3)
            assert rgb.flags.c_contiguous
            np.testing.assert_array_equal(rgb, ref, err_msg=f"{path.name} {tile.window}")
            checked += 1
    assert checked >= 30


def test_downsampled_tiles_read_an_overview_level_close_to_the_full_read():
    path = SAMPLES_DIR / "cogeo.tif"
    with rasterio.open(path) as src:
        assert src.overviews(1)  # a cloud-optimised GeoTIFF with overview levels
    options = TilingOptions(scales=(2,))
    info = raster_info(path, options)
    for rgb, tile in iter_tiles(path, options, info=info):
        ref = reference_tile(path, info, tile.window, (224, 224)).astype(int)
        assert rgb.shape == (224, 224, 3)
        diff = np.abs(rgb.astype(int) - ref)
        assert diff.mean() < 6.0, tile.window  # resampling noise, not another place


def _jpeg(tmp_path, size: int, subsampling: int = 2):
    with rasterio.open(SAMPLES_DIR / "cogeo.tif") as src:
        rgb = src.read([1, 2, 3]).transpose(1, 2, 0)
    img = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.BILINEAR)
    path = tmp_path / f"scene{size}-{subsampling}.jpg"
    img.save(path, quality=92, subsampling=subsampling)
    return path, img


@pytest.mark.parametrize(("subsampling", "max_diff", "mean_diff"), [(0, 2, 0.01), (2, 16, 1.0)])
def test_plain_jpegs_decode_like_gdal(tmp_path, subsampling, max_diff, mean_diff):
    path, _ = _jpeg(tmp_path, 256, subsampling)
    options = TilingOptions()
    info = raster_info(path, options)
    got = read_window(path, (0, 0, 256, 256), options)
    ref = reference_tile(path, info, (0, 0, 256, 256), (224, 224)).astype(int)
    diff = np.abs(got.astype(int) - ref)
    # Pillow's libjpeg-turbo and GDAL's libjpeg round a few pixels differently: with full-size
    # chroma (4:4:4, as UCM) by 1 grey level on ~1e-5 of the values; with 4:2:0 chroma their
    # upsampling filters differ near colour edges. The training features were decoded by Pillow.
    print(f"4:{'4:4' if subsampling == 0 else '2:0'}: max {diff.max()}, mean {diff.mean():.4f}")
    assert diff.max() <= max_diff and diff.mean() < mean_diff


def test_downsampled_jpeg_tiles_use_draft_decoding(tmp_path):
    path, img = _jpeg(tmp_path, 2048)
    options = TilingOptions(tile_size=1024)  # 1024 px -> 224: libjpeg decodes at 1/4
    tiles = list(iter_tiles(path, options))
    assert len(tiles) == 4
    decoded = tiling._JPEG.image
    assert decoded.size == (512, 512)  # the whole file decoded once, at a quarter of the pixels
    for rgb, tile in tiles:
        col, row, width, height = tile.window
        ref = img.resize((224, 224), Image.BILINEAR, box=(col, row, col + width, row + height))
        assert np.abs(rgb.astype(int) - np.asarray(ref, dtype=int)).mean() < 6.0
