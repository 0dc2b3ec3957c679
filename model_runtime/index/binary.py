"""Packed binary codes in a faiss ``IndexBinaryFlat`` (exhaustive Hamming search), with ids.

Convention shared with the hash heads: bit ``i`` of a code is ``tanh_output[i] > 0``, packed with
``np.packbits`` (big-endian bit order within each byte), so a code is ``bits // 8`` bytes.
"""

from __future__ import annotations

import logging
import os

import faiss
import numpy as np

from model_runtime.codes import POPCOUNT, hamming, pack, unpack_signs
from model_runtime.errors import ConfigError, IndexStateError
from model_runtime.fsutil import atomic_write

LOG = logging.getLogger(__name__)

#: faiss OpenMP threads for searches. One query at a time is what the worker does; on the 2-core
#: box two OpenMP threads made a single 10k-code search 80 ms instead of 0.02 ms (bench/README)
SEARCH_THREADS = 1

__all__ = ["POPCOUNT", "BinaryIndex", "hamming", "pack", "unpack_signs"]


def _topk(dist: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k smallest distances, ties broken by id, padded with (-1, -1)."""
    if dist.size > k:
        part = np.argpartition(dist, k - 1)[:k]
        cutoff = dist[part].max()
        part = np.flatnonzero(dist <= cutoff)  # keep all ties at the cutoff, then sort
    else:
        part = np.arange(dist.size)
    order = part[np.lexsort((ids[part], dist[part]))][:k]
    out_d = np.full(k, -1, dtype=np.int32)
    out_i = np.full(k, -1, dtype=np.int64)
    out_d[: order.size] = dist[order]
    out_i[: order.size] = ids[order]
    return out_d, out_i


class BinaryIndex:
    """faiss ``IndexBinaryIDMap(IndexBinaryFlat)``: one file holds codes and tile ids."""

    def __init__(self, bits: int, index: faiss.IndexBinary | None = None) -> None:
        if bits % 8 or bits <= 0:
            raise ConfigError(f"code length must be a positive multiple of 8 bits, got {bits}")
        self.bits = bits
        self.nbytes = bits // 8
        self.index = (
            index if index is not None else faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits))
        )

    @classmethod
    def from_codes(cls, codes: np.ndarray, ids: np.ndarray, bits: int) -> BinaryIndex:
        """Index over codes [N, bits // 8] with int64 ids (sorted here, for subset lookups)."""
        out = cls(bits)
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1, out.nbytes)
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        if len(ids):
            out.index.add_with_ids(np.ascontiguousarray(codes[order]), ids[order])
        return out

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def codes(self) -> np.ndarray:
        """Zero-copy view of the stored codes [N, bits // 8] (valid while the index lives)."""
        if self.ntotal == 0:
            return np.zeros((0, self.nbytes), dtype=np.uint8)
        flat = faiss.downcast_IndexBinary(self.index.index)
        return faiss.rev_swig_ptr(flat.xb.data(), self.ntotal * self.nbytes).reshape(
            self.ntotal, self.nbytes
        )

    @property
    def ids(self) -> np.ndarray:
        if self.ntotal == 0:
            return np.zeros(0, dtype=np.int64)
        return faiss.rev_swig_ptr(self.index.id_map.data(), self.ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hamming top-k for packed queries [nq, B] -> (distances int32, ids int64), -1 padded."""
        query = np.ascontiguousarray(np.atleast_2d(query), dtype=np.uint8)
        if query.shape[1] != self.nbytes:
            raise ConfigError(f"query code has {query.shape[1] * 8} bits, index has {self.bits}")
        k = max(1, int(k))
        if self.ntotal == 0:
            return (np.full((len(query), k), -1, np.int32), np.full((len(query), k), -1, np.int64))
        if faiss.omp_get_max_threads() != SEARCH_THREADS:
            faiss.omp_set_num_threads(SEARCH_THREADS)
        dist, ids = self.index.search(query, min(k, self.ntotal))
        if k > self.ntotal:
            pad = k - self.ntotal
            dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=-1)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        return dist, ids

    def search_subset(
        self,
        query: np.ndarray,
        k: int,
        subset: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hamming top-k among the tile ids in ``subset`` only (bbox filters); [k] each."""
        query = np.asarray(query, dtype=np.uint8).reshape(-1)
        ids = self.ids
        subset = np.asarray(subset, dtype=np.int64)
        if len(ids) == 0 or len(subset) == 0:
            return _topk(np.zeros(0, np.int32), np.zeros(0, np.int64), max(1, int(k)))
        pos = np.minimum(np.searchsorted(ids, subset), len(ids) - 1)
        pos = pos[ids[pos] == subset]  # ids unknown to the index are dropped
        return _topk(hamming(query, self.codes[pos]), ids[pos], max(1, int(k)))

    def write(self, path: str | os.PathLike) -> None:
        """Write the faiss file as is (callers make it atomic: :meth:`save`)."""
        faiss.write_index_binary(self.index, str(path))

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file, fsync, rename); a full disk -> DiskFullError."""
        atomic_write(path, self.write)

    @classmethod
    def load(cls, path: str | os.PathLike, bits: int) -> BinaryIndex:
        try:
            index = faiss.read_index_binary(str(path))
        except RuntimeError as err:
            raise IndexStateError(f"{path}: unreadable code index ({err})") from err
        if index.d != bits:
            raise IndexStateError(f"{path}: holds {index.d}-bit codes, expected {bits}")
        if not isinstance(index, faiss.IndexBinaryIDMap):
            index = faiss.downcast_IndexBinary(index)
        return cls(bits, index)
