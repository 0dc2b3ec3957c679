"""The cheap deterministic stand-in for the model that runtime tests share (the raster and index
code under test is real). Imported by ``conftest`` only when a fixture or test asks for it, so
tests that need neither numpy nor the model package collect without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_runtime.config import BackboneConfig
from model_runtime.model import HashModel, HeadsRef, ImageOutputs

BITS = 64
FAKE_CONFIG = BackboneConfig(name="fake-meancolour", image_dim=48, text_dim=48,
                             open_clip_arch="fake")


class FakeEncoder(HashModel):
    """A cheap deterministic stand-in for the model (the raster and index code under test is
    real): random projection of 4x4 grid mean colours -> tanh; texts -> a hash of the words.

    Counts calls and tiles so tests can tell what was (re-)encoded; ``fail_after`` batches
    raises to simulate a crash. ``proj_dim`` > 0 adds a stored projection (the grid means)."""

    backend = "fake"

    def __init__(self, bits: int = BITS, fail_after: int | None = None, seed: int = 0,
                 proj_dim: int = 0) -> None:
        heads = HeadsRef(Path(f"fake-{seed}.safetensors"), f"{seed:08d}", FAKE_CONFIG.name, bits,
                         "fake", {"proj_dim": proj_dim})
        super().__init__(FAKE_CONFIG, heads, "cpu")
        rng = np.random.default_rng(seed)
        self.proj = rng.standard_normal((48, bits)).astype(np.float32)
        self.fail_after = fail_after
        self.batches = 0
        self.tiles = 0
        self.seen: list[np.ndarray] = []

    def features(self, arrays) -> np.ndarray:
        feats = []
        for a in arrays:
            h, w = a.shape[0] // 4 * 4, a.shape[1] // 4 * 4
            grid = a[:h, :w].reshape(4, h // 4, 4, w // 4, 3).mean(axis=(1, 3)).reshape(-1)
            feats.append(grid / 64.0 - 2.0)
        return np.stack(feats).astype(np.float32)

    def _encode_batch(self, batch: np.ndarray) -> ImageOutputs:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("simulated crash in the encoder")
        self.batches += 1
        self.tiles += len(batch)
        self.seen.extend(list(batch))
        feats = self.features(batch)
        proj = feats[:, : self.heads.proj_dim].astype(np.float16) if self.heads.proj_dim else None
        return ImageOutputs(np.tanh(feats @ self.proj), proj)

    def encode_texts(self, texts) -> np.ndarray:
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        return np.tanh(np.stack([r.standard_normal(self.bits) for r in rng]).astype(np.float32))

    def __call__(self, arrays):
        """The first release's encoder interface: (packed codes, tanh)."""
        from model_runtime.codes import pack

        out = self.encode_images(np.stack(arrays))
        return pack(out.tanh), out.tanh
