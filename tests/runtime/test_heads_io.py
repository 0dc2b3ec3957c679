"""Saving and loading hash heads; clear errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_runtime.errors import DataError, ModelMismatchError
from model_runtime.hashing.heads_io import load_heads, read_metadata, save_heads, shipped_heads_path
from model_runtime.hashing.model import HashHeads, codes, signs
from model_runtime.paths import HEADS_DIR


@pytest.fixture
def heads_file(tmp_path):
    torch.manual_seed(0)
    heads = HashHeads(image_dim=40, text_dim=24, bits=32, hidden=16).eval()
    path = save_heads(heads, tmp_path / "h.safetensors", "cach", "bb-a", extra={"seed": 3})
    return heads, path


def test_roundtrip_fp16(heads_file):
    heads, path = heads_file
    loaded = load_heads(path, expect_backbone="bb-a", expect_bits=32, expect_dims=(40, 24))
    x_i, x_t = torch.randn(5, 40), torch.randn(5, 24)
    with torch.no_grad():
        a, b = heads(x_i, x_t)
        la, lb = loaded(x_i, x_t)
    assert torch.allclose(a, la, atol=5e-3) and torch.allclose(b, lb, atol=5e-3)
    assert not loaded.training
    meta = read_metadata(path)
    assert (meta["method"], meta["backbone"], meta["bits"], meta["hidden"]) == (
        "cach",
        "bb-a",
        32,
        16,
    )
    assert meta["extra"] == {"seed": 3}


@pytest.mark.parametrize(
    "kwargs",
    [{"expect_backbone": "other-bb"}, {"expect_bits": 64}, {"expect_dims": (1280, 384)}],
)
def test_mismatch_names_file(heads_file, kwargs):
    _, path = heads_file
    with pytest.raises(ModelMismatchError) as err:
        load_heads(path, **kwargs)
    assert str(path) in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(DataError, match="nope.safetensors"):
        load_heads(missing)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match="bad.safetensors"):
        load_heads(bad)


def test_foreign_safetensors_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(DataError, match="foreign.safetensors"):
        load_heads(path)


def test_truncated_weights(heads_file, tmp_path):
    _, path = heads_file
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="cut.safetensors"):
        load_heads(cut)


def test_codes_bit_order():
    out = np.array([[0.9, -0.2, 0.1, -1, -1, -1, -1, 0.5, *([-0.5] * 8)]], dtype=np.float32)
    packed = codes(out)
    assert packed.dtype == np.uint8 and packed.shape == (1, 2)
    assert packed[0, 0] == 0b10100001 and packed[0, 1] == 0
    np.testing.assert_array_equal(signs(out)[0, :3], [1, -1, 1])
    with pytest.raises(ValueError):
        codes(np.zeros((2, 12)))


def test_shipped_path_layout():
    assert shipped_heads_path(64) == HEADS_DIR / "cach-effnetlite0-minilm-64.safetensors"


def _proj_heads(bits=32):
    from model_runtime.hashing.projection import fit_projection

    torch.manual_seed(1)
    heads = HashHeads(image_dim=40, text_dim=24, bits=bits, hidden=16, proj_dim=12).eval()
    mean, matrix = fit_projection(np.random.default_rng(0).random((200, 40)), 12, whiten=0.5)
    heads.image_proj.mean.copy_(torch.from_numpy(mean))
    heads.image_proj.matrix.copy_(torch.from_numpy(matrix))
    return heads


def test_projection_roundtrip_and_identity(tmp_path):
    heads = _proj_heads()
    path = save_heads(heads, tmp_path / "p.safetensors", "cach", "bb-a")
    meta = read_metadata(path)
    assert meta["proj_dim"] == 12 and len(meta["proj_id"]) == 16
    loaded = load_heads(path, expect_dims=(40, 24))
    assert loaded.proj_dim == 12
    x = np.random.default_rng(2).random((7, 40)).astype(np.float32) * 5
    proj = loaded.project_image_np(x)
    assert proj.shape == (7, 12)
    np.testing.assert_allclose(
        loaded.encode_image_np(x), loaded.encode_image_proj_np(proj), atol=1e-6
    )
    # float16 storage of the projection (what an index keeps) changes the outputs very little
    from_f16 = loaded.encode_image_proj_np(proj.astype(np.float16))
    assert np.abs(from_f16 - loaded.encode_image_np(x)).max() < 5e-3
    assert np.abs(loaded.encode_image_np(x) - heads.encode_image_np(x)).max() < 1e-2


def test_heads_without_projection_have_proj_dim_zero(heads_file):
    heads, path = heads_file
    assert read_metadata(path)["proj_dim"] == 0
    loaded = load_heads(path)
    assert loaded.proj_dim == 0
    x = np.random.default_rng(3).random((4, 40)).astype(np.float32) * 3
    proj = loaded.project_image_np(x)  # the L2-normalised features themselves
    np.testing.assert_allclose(np.linalg.norm(proj, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(loaded.encode_image_proj_np(proj), loaded.encode_image_np(x),
                               atol=1e-6)


def test_metadata_of_a_file_written_before_projections(tmp_path):
    """A heads file whose metadata has no proj_dim key at all (the archived shipped heads)."""
    from safetensors.numpy import save_file

    heads = HashHeads(image_dim=40, text_dim=24, bits=16, hidden=8)
    meta = {"format": "cach-heads", "format_version": "1", "method": "cach", "backbone": "bb",
            "bits": "16", "image_dim": "40", "text_dim": "24", "hidden": "8", "extra": "{}"}
    tensors = {k: v.detach().numpy().astype(np.float16) for k, v in heads.state_dict().items()}
    path = tmp_path / "old.safetensors"
    save_file(tensors, str(path), metadata=meta)
    assert read_metadata(path)["proj_dim"] == 0
    assert load_heads(path).proj_dim == 0


def test_archived_heads_still_load():
    archived = sorted((HEADS_DIR / "archive").glob("*.safetensors"))
    for path in archived:
        meta = read_metadata(path)
        heads = load_heads(path, expect_backbone=meta["backbone"])
        assert heads.bits == meta["bits"]
