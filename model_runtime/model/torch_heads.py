"""Hash heads in torch: small MLPs from frozen encoder features to ``bits`` tanh outputs.

The torch backend runs :class:`HashHeads`; training (``hashing/``) builds and fits the same
module and adds its training-only parts there. :func:`load_heads` reads a heads file
(:mod:`model_runtime.model.heads_format`) into it.

Bit order of packed codes (``hashing.model.codes``): bit ``j`` of a code is ``tanh_out[..., j] > 0``; bits are
packed big-endian with ``np.packbits`` (bit 0 is the most significant bit of byte 0), so a code of
``bits`` bits takes ``bits // 8`` bytes. This is the layout faiss ``IndexBinaryFlat`` expects.

Stored projection (``proj_dim > 0``): the heads may carry a frozen linear projection of the
L2-normalised image features, fitted on training images (PCA with partial whitening, see
``hashing.projection.fit_projection``). An index stores it per tile (float16): its cosine re-ranks image queries,
and :meth:`HashHeads.encode_image_proj` re-hashes it without the encoder, so that
``encode_image(x) == encode_image_proj(project_image(x))``. Heads whose image head reads the
features beside a projection (``image_input = "features"``, the shipped 64- and 128-bit heads)
compute the projection for storage only; adaptation folds them onto it first
(``numpy_heads.fold_onto_projection``). Without a projection
(``proj_dim == 0``, heads files from before it existed) the "projection" is the L2-normalised
feature itself and the same identity holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_runtime.errors import DataError
from model_runtime.model.heads_format import check_metadata, read_metadata


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.LayerNorm(hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


class Projection(nn.Module):
    """Frozen ``(x̂ - mean) @ matrix``: ``x̂`` the L2-normalised image features (buffers only)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("matrix", torch.zeros(in_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x.float(), dim=-1) - self.mean) @ self.matrix

    def right_inverse(self) -> torch.Tensor:
        """``G [in_dim, out_dim]`` with ``matrixᵀ G = I``: ``G p + mean`` reconstructs features."""
        m = self.matrix.double()
        return (m @ torch.linalg.inv(m.t() @ m)).float()


class HashHeads(nn.Module):
    """Image head ``image_dim [-> proj_dim] -> hidden -> bits``, text head ``text_dim -> hidden ->
    bits``.

    Inputs are L2-normalised inside the heads, so raw (unnormalised) pooled image features and
    normalised sentence embeddings can be fed as they come out of the encoders. With
    ``proj_dim > 0`` the image head reads the frozen projection :attr:`image_proj` of the features.
    """

    def __init__(
        self,
        image_dim: int = 1280,
        text_dim: int = 384,
        bits: int = 64,
        hidden: int = 512,
        dropout: float = 0.1,
        proj_dim: int = 0,
        image_input: str = "projection",
    ) -> None:
        super().__init__()
        if bits <= 0 or bits % 8:
            raise ValueError(f"bits must be a positive multiple of 8, got {bits}")
        self.image_dim, self.text_dim, self.bits, self.hidden = image_dim, text_dim, bits, hidden
        self.proj_dim = int(proj_dim)
        #: what the image head reads (``heads_format.IMAGE_INPUTS``): with ``features`` the
        #: projection is only computed for storage and re-ranking
        self.image_input = image_input if self.proj_dim > 0 else "projection"
        if self.proj_dim > 0:
            self.image_proj = Projection(image_dim, self.proj_dim)
        reads_proj = self.proj_dim and self.image_input == "projection"
        self.image_head = _mlp(self.proj_dim if reads_proj else image_dim, hidden, bits, dropout)
        self.text_head = _mlp(text_dim, hidden, bits, dropout)
        #: True while the image head is in its training form (see :meth:`unfold_projection`)
        self.raw_coords = False
        self._recon: torch.Tensor | None = None
        #: tanh sharpness ``tanh(beta * z)`` used while training (annealed up); a plain float, not
        #: saved: :meth:`fold_beta` bakes it into the last layers before the heads are shipped.
        self.beta = 1.0

    def fold_beta(self) -> None:
        """Bake ``beta`` into the last linear layers (``tanh(beta z) = tanh(z')``), reset it to 1."""
        if self.beta != 1.0:
            with torch.no_grad():
                for head in (self.image_head, self.text_head):
                    head[-1].weight.mul_(self.beta)
                    head[-1].bias.mul_(self.beta)
            self.beta = 1.0

    def project_image(self, feats: torch.Tensor) -> torch.Tensor:
        """Image features ``[N, image_dim]`` -> the stored projection ``[N, proj_dim]``.

        Its cosine is what image re-ranking uses. Without a projection: the L2-normalised features.
        """
        if self.proj_dim > 0:
            return self.image_proj(feats)
        return F.normalize(feats.float(), dim=-1)

    def encode_image_proj(self, proj: torch.Tensor) -> torch.Tensor:
        """Stored projections ``[N, proj_dim]`` -> tanh outputs ``[N, bits]`` (no encoder)."""
        if self.image_input == "features":
            raise DataError("These heads' image head reads the image features, not the stored "
                            "projection.")
        x = proj.float()
        if self.raw_coords:  # training form: the head's first layer acts on reconstructions
            x = x @ self._recon.t() + self.image_proj.mean
        return torch.tanh(self.beta * self.image_head(x))

    def unfold_projection(self) -> None:
        """Training form: the image head's first layer acts on ``G p + mean`` (feature space).

        Exactly the same function; optimisers such as Adam, which are not rotation invariant,
        train it as they train a head on the features themselves (measured: codes keep 4 points
        more of the frozen features' unseen-class mAP than when trained on ``p`` directly).
        """
        if self.proj_dim == 0 or self.raw_coords or self.image_input == "features":
            return
        first = self.image_head[0]
        recon = self.image_proj.right_inverse()
        raw = nn.Linear(self.image_dim, first.out_features)
        with torch.no_grad():
            raw.weight.copy_(first.weight @ self.image_proj.matrix.t())
            raw.bias.copy_(first.bias - raw.weight @ self.image_proj.mean)
        self.image_head[0], self._recon, self.raw_coords = raw, recon, True

    def fold_projection(self) -> None:
        """Back to the shipped form: a first layer ``proj_dim -> hidden`` on the projection."""
        if not self.raw_coords:
            return
        raw = self.image_head[0]
        first = nn.Linear(self.proj_dim, raw.out_features)
        with torch.no_grad():
            first.weight.copy_(raw.weight @ self._recon)
            first.bias.copy_(raw.bias + raw.weight @ self.image_proj.mean)
        self.image_head[0], self._recon, self.raw_coords = first, None, False

    def encode_image(self, feats: torch.Tensor) -> torch.Tensor:
        """Image features ``[N, image_dim]`` -> tanh outputs ``[N, bits]`` in (-1, 1)."""
        if self.image_input == "features":
            return torch.tanh(self.beta * self.image_head(F.normalize(feats.float(), dim=-1)))
        return self.encode_image_proj(self.project_image(feats))

    def encode_text(self, feats: torch.Tensor) -> torch.Tensor:
        """Text features ``[N, text_dim]`` -> tanh outputs ``[N, bits]`` in (-1, 1)."""
        return torch.tanh(self.beta * self.text_head(F.normalize(feats.float(), dim=-1)))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(image), self.encode_text(text)

    @torch.inference_mode()
    def encode_image_np(self, feats: np.ndarray, batch: int = 4096) -> np.ndarray:
        """NumPy convenience: float32 tanh outputs for image features, in eval mode."""
        return self._encode_np(self.encode_image, feats, batch)

    @torch.inference_mode()
    def encode_text_np(self, feats: np.ndarray, batch: int = 4096) -> np.ndarray:
        """NumPy convenience: float32 tanh outputs for text features, in eval mode."""
        return self._encode_np(self.encode_text, feats, batch)

    @torch.inference_mode()
    def project_image_np(self, feats: np.ndarray, batch: int = 4096) -> np.ndarray:
        """NumPy convenience: float32 stored projections of image features."""
        width = self.proj_dim or self.image_dim
        return self._encode_np(self.project_image, feats, batch, width)

    @torch.inference_mode()
    def encode_image_proj_np(self, proj: np.ndarray, batch: int = 4096) -> np.ndarray:
        """NumPy convenience: float32 tanh outputs from stored projections (float16 is fine)."""
        return self._encode_np(self.encode_image_proj, proj, batch)

    def _encode_np(self, fn, feats: np.ndarray, batch: int, width: int | None = None) -> np.ndarray:
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            x = np.asarray(feats, dtype=np.float32)
            outs = [
                fn(torch.from_numpy(x[i : i + batch]).to(device)).float().cpu().numpy()
                for i in range(0, len(x), batch)
            ]
        finally:
            self.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0, width or self.bits), np.float32)


def load_heads(
    path: str | os.PathLike,
    expect_backbone: str | None = None,
    expect_bits: int | None = None,
    expect_dims: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
) -> HashHeads:
    """Load heads in eval mode (float32). Mismatched backbone, bits or dims -> ModelMismatchError.

    ``expect_dims`` is ``(image_dim, text_dim)`` of the features the caller will feed.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    check_metadata(path, meta, expect_backbone, expect_bits, expect_dims)
    heads = HashHeads(meta["image_dim"], meta["text_dim"], meta["bits"], meta["hidden"],
                      proj_dim=meta["proj_dim"], image_input=meta["image_input"])
    try:
        state = load_file(str(path))
        heads.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as err:
        raise DataError(f"Hash-head weights in {path} are corrupt or incomplete: {err}") from err
    heads.method = meta["method"]  # type: ignore[attr-defined]
    heads.backbone = meta["backbone"]  # type: ignore[attr-defined]
    heads.meta = meta  # type: ignore[attr-defined]
    return heads.to(device).eval()
