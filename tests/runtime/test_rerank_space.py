"""Image re-ranking undoes the stored projection's partial whitening (issue 19.2).

The heads' projection is a PCA with partial whitening (``fit_projection``); re-ranking image
queries by the cosine of the whitened projection moved results away from the frozen features'
own ranking on unseen scene sets. ``unwhiten_scale`` reads the whitening back from the matrix
(column norms), so the re-rank space is the plain PCA of the features: its cosine equals the
cosine of the centred, L2-normalised frozen features when no axis is truncated.
"""

from __future__ import annotations

import numpy as np
import pytest

from model_runtime.codes import pack
from model_runtime.hashing.projection import fit_projection, project
from model_runtime.index.query import (
    RERANK_UNWHITEN,
    Index,
    Query,
    rerank_scale,
    unwhiten_scale,
)


def _cos(a: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return a @ a.T


@pytest.fixture()
def feats() -> np.ndarray:
    rng = np.random.default_rng(0)
    spread = np.geomspace(10.0, 0.1, 24)  # strongly anisotropic, as image features are
    return rng.normal(size=(400, 24)) * spread + 3.0


def test_unwhitened_projection_cosine_is_the_centred_feature_cosine(feats):
    mean, matrix = fit_projection(feats, dim=24, whiten=0.5)
    proj = project(feats, mean, matrix)
    centred = feats / np.linalg.norm(feats, axis=1, keepdims=True) - mean
    want = _cos(centred)
    got = _cos(proj * unwhiten_scale(matrix, 1.0))
    assert np.abs(got - want).max() < 1e-4
    # the whitened projection itself ranks differently (what the second release re-ranked by)
    assert np.abs(_cos(proj) - want).max() > 0.05


def test_truncated_projection_approximates_the_feature_cosine(feats):
    mean, matrix = fit_projection(feats, dim=8, whiten=0.5)
    proj = project(feats, mean, matrix)
    centred = feats / np.linalg.norm(feats, axis=1, keepdims=True) - mean
    want = _cos(centred)
    err_unwhite = np.abs(_cos(proj * unwhiten_scale(matrix)) - want).mean()
    err_white = np.abs(_cos(proj) - want).mean()
    assert err_unwhite < err_white / 2


def test_tempered_scale_lies_between(feats):
    _, matrix = fit_projection(feats, dim=12, whiten=0.5)
    full, half = unwhiten_scale(matrix, 1.0), unwhiten_scale(matrix, 0.5)
    assert np.isclose(full.mean(), 1.0) and np.isclose(half.mean(), 1.0)
    # leading axes (largest eigenvalues) were shrunk by the whitening: they get the largest factor
    assert full[0] > half[0] > 1.0 > half[-1] > full[-1]


def test_rerank_scale_reads_the_heads_file(tmp_path, feats):
    from safetensors.numpy import save_file

    _, matrix = fit_projection(feats, dim=12, whiten=0.5)
    with_proj, without = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"image_proj.matrix": np.ascontiguousarray(matrix), "x": np.zeros(2, np.float32)},
              str(with_proj))
    save_file({"x": np.zeros(2, np.float32)}, str(without))
    got = rerank_scale(str(with_proj))
    assert np.allclose(got, unwhiten_scale(matrix, RERANK_UNWHITEN), rtol=1e-5)
    assert np.allclose(rerank_scale(str(with_proj), 1.0), unwhiten_scale(matrix), rtol=1e-5)
    assert 0.0 < RERANK_UNWHITEN <= 1.0 and got[0] > 1.0 > got[-1]
    assert rerank_scale(str(without)) is None


def test_index_reranks_image_queries_in_the_unwhitened_space():
    """Two tiles: the whitened cosine prefers tile 1, the unwhitened one tile 2."""
    index = Index.__new__(Index)
    index.bits = 8
    tiles = {1: np.array([0.0, 1.0], np.float32), 2: np.array([1.0, 0.1], np.float32)}
    vectors = {i: (b"\x00", None, p) for i, p in tiles.items()}
    proj = np.array([0.6, 0.8], np.float32)
    ids, dist = np.array([1, 2]), np.array([0, 0])
    code = pack(np.ones(8, np.float32))
    plain = index._scores(ids, dist, Query(code, None, proj), vectors)
    assert plain[0] > plain[1]
    scale = np.array([3.0, 0.5], np.float32)
    scaled = index._scores(ids, dist, Query(code, None, proj, scale), vectors)
    assert scaled[1] > scaled[0]
