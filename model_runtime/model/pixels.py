"""Image files to the uint8 pixels every backend's image graph takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_runtime.errors import DataError


def load_pixels(paths: list[Path], size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Image files -> uint8 ``[N, size, size, 3]``, resized as the frozen features are (PIL,
    the config's interpolation, no crop)."""
    from PIL import Image

    resample = getattr(Image.Resampling, interpolation.upper())
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except OSError as err:
            raise DataError(f"Cannot read image {path}: {err}") from err
        out[i] = np.asarray(rgb if rgb.size == (size, size) else rgb.resize((size, size), resample))
    return out
