"""Hash heads for training: :class:`HashHeads` (defined with the inference package, in
:mod:`model_runtime.model.torch_heads`) plus the training-only :class:`CrossDecoders`.

:class:`CrossDecoders` (the cross-autoencoder of CACH) exist only while training and are never
shipped.

Bit order of packed codes (:func:`codes`): bit ``j`` of a code is ``tanh_out[..., j] > 0``; bits are
packed big-endian with ``np.packbits`` (bit 0 is the most significant bit of byte 0), so a code of
``bits`` bits takes ``bits // 8`` bytes. This is the layout faiss ``IndexBinaryFlat`` expects.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from model_runtime.model.torch_heads import HashHeads, Projection, _mlp

__all__ = ["CrossDecoders", "HashHeads", "Projection", "codes", "signs"]

class CrossDecoders(nn.Module):
    """Training-only decoders of the cross-autoencoder: hash -> the *other* modality's features.

    ``image_from_text`` maps a text hash to (L2-normalised) image features and ``text_from_image``
    maps an image hash to text features.
    """

    def __init__(self, bits: int, image_dim: int = 1280, text_dim: int = 384, hidden: int = 512):
        super().__init__()
        self.image_from_text = _mlp(bits, hidden, image_dim, 0.0)
        self.text_from_image = _mlp(bits, hidden, text_dim, 0.0)


def codes(tanh_out: np.ndarray) -> np.ndarray:
    """Packed binary codes ``uint8 [N, bits // 8]``: bit j = ``tanh_out[:, j] > 0``, big-endian."""
    from model_runtime.codes import pack

    arr = np.asarray(tanh_out)
    if arr.ndim != 2 or arr.shape[1] % 8:
        raise ValueError(f"expected [N, bits] with bits a multiple of 8, got shape {arr.shape}")
    return pack(arr)


def signs(tanh_out: np.ndarray) -> np.ndarray:
    """``+1/-1`` int8 codes (``> 0`` -> +1, else -1), the unpacked form of :func:`codes`."""
    return np.where(np.asarray(tanh_out) > 0, 1, -1).astype(np.int8)
