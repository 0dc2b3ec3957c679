"""Bit packing, written once. NumPy in, NumPy out.

Convention shared by the heads, the index and the caption bank: bit ``j`` of a code is
``tanh_output[j] > 0``, packed with ``np.packbits`` (big-endian within each byte: bit 0 is the
most significant bit of byte 0), so a code of ``bits`` bits is ``bits // 8`` bytes. This is the
layout faiss ``IndexBinaryFlat`` expects.
"""

from __future__ import annotations

import numpy as np

from model_runtime.errors import ConfigError

#: popcount of every byte value
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def pack(values: np.ndarray) -> np.ndarray:
    """Float outputs [N, bits] (or [bits]) -> packed codes uint8 [N, bits // 8]."""
    values = np.atleast_2d(np.asarray(values))
    if values.shape[1] % 8:
        raise ConfigError(f"code length must be a multiple of 8 bits, got {values.shape[1]}")
    return np.packbits(values > 0, axis=1)


def unpack_signs(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packed codes [N, bits // 8] -> float32 [N, bits] of -1/+1."""
    signs = np.unpackbits(np.atleast_2d(codes), axis=1, count=bits).astype(np.float32)
    return signs * 2.0 - 1.0


def hamming(query: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Hamming distances between one packed code [B] and codes [N, B] (NumPy reference)."""
    return POPCOUNT[np.bitwise_xor(codes, query.reshape(1, -1))].sum(axis=1, dtype=np.int32)
