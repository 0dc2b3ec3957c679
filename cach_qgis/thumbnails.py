"""Thumbnails of result tiles, read by GDAL from the source window (no runtime round trip)."""

from __future__ import annotations

from osgeo import gdal
from qgis.PyQt.QtGui import QImage

gdal.UseExceptions()


def thumbnail(source: str, window: tuple[int, int, int, int], size: int = 72) -> QImage | None:
    """An RGB (or grey) image of ``window`` = (col, row, width, height) of ``source``.

    Byte rasters are shown as is; other data types are stretched to their min/max in the window.
    Returns None when the source cannot be read.
    """
    col, row, width, height = window
    if width <= 0 or height <= 0:
        return None
    try:
        src = gdal.Open(source)
        if src is None:
            return None
        bands = [1, 2, 3] if src.RasterCount >= 3 else [1]
        is_byte = src.GetRasterBand(1).DataType == gdal.GDT_Byte
        scale = width / max(width, height)
        out_w = max(1, round(size * scale))
        out_h = max(1, round(size * height / max(width, height)))
        options = gdal.TranslateOptions(
            format="MEM",
            srcWin=[col, row, width, height],
            width=out_w,
            height=out_h,
            bandList=bands,
            outputType=gdal.GDT_Byte,
            scaleParams=None if is_byte else [[] for _ in bands],
            resampleAlg="average",
        )
        mem = gdal.Translate("", src, options=options)
        if len(bands) == 3:
            data = mem.ReadRaster(
                0,
                0,
                out_w,
                out_h,
                band_list=[1, 2, 3],
                buf_pixel_space=3,
                buf_line_space=3 * out_w,
                buf_band_space=1,
            )
            image = QImage(data, out_w, out_h, 3 * out_w, QImage.Format.Format_RGB888)
        else:
            data = mem.ReadRaster(0, 0, out_w, out_h)
            image = QImage(data, out_w, out_h, out_w, QImage.Format.Format_Grayscale8)
        return image.copy()  # detach from the Python bytes buffer
    except RuntimeError:
        return None
