"""Image re-ranking undoes the stored projection's partial whitening and centres it on the
archive's own mean (issue 19.2).

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
    CENTRE_PRIOR_TILES,
    RERANK_UNWHITEN,
    Index,
    Query,
    rerank_scale,
    unwhiten_scale,
)
from model_runtime.services.queries import QueryParts, query_vector


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


def test_centring_on_the_archive_gives_the_archive_centred_feature_cosine(feats):
    """The projection is fitted on one imagery (its origin is that imagery's mean); an archive of
    other imagery sits elsewhere. Its projections centred on their own mean give the cosine of
    the archive-centred features, which the training-centred cosine does not."""
    mean, matrix = fit_projection(feats, dim=24, whiten=0.5)
    rng = np.random.default_rng(1)
    archive = rng.normal(size=(300, 24)) * np.geomspace(0.5, 4.0, 24) + 6.0  # another imagery
    proj, scale = project(archive, mean, matrix), unwhiten_scale(matrix, 1.0)
    unit = archive / np.linalg.norm(archive, axis=1, keepdims=True)
    want = _cos(unit - unit.mean(axis=0))
    got = _cos((proj - proj.mean(axis=0)) * scale)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(_cos(proj * scale) - want).max() > 0.05  # the training centre ranks otherwise


def test_index_reranks_around_the_archive_centre():
    """Two tiles and a query, all offset by the archive's centre: around the origin tile 1 is
    nearer the query, around the centre tile 2 is (the query was centred before normalising)."""
    index = Index.__new__(Index)
    index.bits = 8
    centre = np.array([5.0, 5.0], np.float32)
    tiles = {1: centre + [-1.0, -0.5], 2: centre + [-3.0, 3.0]}
    vectors = {i: (b"\x00", None, p.astype(np.float32)) for i, p in tiles.items()}
    raw_query = centre + np.array([1.0, 0.0], np.float32)
    ids, dist, code = np.array([1, 2]), np.array([0, 0]), pack(np.ones(8, np.float32))
    plain = index._scores(ids, dist, Query(code, None, query_vector(QueryParts(image=raw_query))),
                          vectors)
    assert plain[0] > plain[1]
    centred = query_vector(QueryParts(image=raw_query).shifted(centre))
    around = index._scores(ids, dist, Query(code, None, centred, None, centre), vectors)
    assert around[1] > around[0]


def test_proj_centre_is_the_shrunk_mean_of_the_stored_projections(
        sample_folder, tmp_path, FakeEncoder):
    from model_runtime.index import BuildOptions, build_index, open_index
    from model_runtime.raster.tiling import TilingOptions

    build_index(tmp_path / "idx", [str(sample_folder)], FakeEncoder(proj_dim=8),
                BuildOptions(tiling=TilingOptions(tile_size=128)))
    with open_index(tmp_path / "idx") as index:
        stored = index.store.vectors(index.codes.ids)
        projs = np.stack([v[2] for v in stored.values()])
        n = len(projs)
        want = projs.mean(axis=0) * n / (n + CENTRE_PRIOR_TILES)
        assert np.allclose(index.proj_centre(), want, atol=1e-5)
        assert index.proj_centre() is index.proj_centre()  # read once per open index
        tile = int(index.codes.ids[0])
        raw = index.tile_proj(tile)
        query = Query.of(index.tile_vector(tile), index.bits,
                         query_vector(QueryParts(tile=raw).shifted(index.proj_centre())))
        hits = index.search(Query(query.code, None, query.proj, None, index.proj_centre()),
                            k=3, collapse=False)
        assert hits[0].tile_id == tile and all(np.isfinite(h.score) for h in hits)


def test_proj_centre_is_none_without_stored_projections(sample_folder, tmp_path, FakeEncoder):
    from model_runtime.index import BuildOptions, build_index, open_index
    from model_runtime.raster.tiling import TilingOptions

    build_index(tmp_path / "idx", [str(sample_folder)], FakeEncoder(),
                BuildOptions(tiling=TilingOptions(tile_size=128)))
    with open_index(tmp_path / "idx") as index:
        assert index.proj_centre() is None
