"""Heads whose image head reads the features beside a stored projection (``image_input =
features``, the shipped 64- and 128-bit heads): written and read back, encoded by what the head
reads, and folded onto the projection for adaptation (issue 19.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_runtime.errors import DataError
from model_runtime.model.heads_format import read_metadata, reads_projection
from model_runtime.model.numpy_heads import (
    fold_onto_projection,
    l2_normalize,
    load_numpy_heads,
    mlp_forward,
    random_heads,
    save_numpy_heads,
)


def _feats(n: int = 50, dim: int = 48, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32) + 0.5


@pytest.fixture()
def features_heads(tmp_path):
    heads = random_heads(16, image_dim=48, text_dim=24, hidden=32, proj_dim=48, seed=2,
                         image_input="features")
    return load_numpy_heads(save_numpy_heads(heads, tmp_path / "h.safetensors"))


def test_the_flag_is_written_read_and_only_when_it_differs(tmp_path, features_heads):
    meta = read_metadata(tmp_path / "h.safetensors")
    assert meta["image_input"] == "features" and not reads_projection(meta)
    plain = save_numpy_heads(random_heads(16, image_dim=48, text_dim=24, hidden=32, proj_dim=8),
                             tmp_path / "p.safetensors")
    from safetensors import safe_open

    with safe_open(str(plain), framework="numpy") as f:
        assert "image_input" not in f.metadata()  # files of before keep their bytes
    assert read_metadata(plain)["image_input"] == "projection" and reads_projection(
        read_metadata(plain))


def test_the_image_head_reads_the_features_and_refuses_projections(features_heads):
    x = _feats()
    want = mlp_forward(features_heads.weights, "image_head", l2_normalize(x))[0]
    assert np.allclose(features_heads.encode_image_np(x), want, atol=1e-6)
    assert features_heads.project_image_np(x).shape == (50, 48)
    with pytest.raises(DataError, match="fold"):
        features_heads.encode_image_proj_np(features_heads.project_image_np(x))


def test_folding_onto_a_full_projection_gives_the_same_outputs(features_heads):
    """With as many axes as features the projection is invertible: the folded head, reading
    projections, computes what the original computed from the features."""
    x = _feats()
    folded = fold_onto_projection(features_heads)
    assert folded.image_input == "projection" and features_heads.image_input == "features"
    got = folded.encode_image_proj_np(features_heads.project_image_np(x))
    assert np.abs(got - features_heads.encode_image_np(x)).max() < 1e-3  # float32 fold
    assert np.array_equal(folded.encode_text_np(_feats(5, 24)),
                          features_heads.encode_text_np(_feats(5, 24)))
    assert fold_onto_projection(folded) is folded


def test_an_unknown_image_input_is_a_data_error(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = save_numpy_heads(random_heads(16, image_dim=48, text_dim=24, hidden=32, proj_dim=8),
                            tmp_path / "h.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(path)), str(path), metadata={**meta, "image_input": "pixels"})
    with pytest.raises(DataError, match="image_input"):
        read_metadata(path)
    assert json.loads(meta["extra"]) == {}
