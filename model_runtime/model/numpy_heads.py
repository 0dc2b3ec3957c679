"""Hash heads in NumPy: read, run, fine-tune and write a heads file without torch.

The heads are small MLPs (``Linear -> LayerNorm -> GELU -> Linear -> tanh``, see
``model/torch_heads.py``); this module is their torch-free twin, used by the lean runtime for
``cach eval``, for re-hashing an index from its stored projections and for *Adapt to this archive*
(``hashing/adapt.py``). It reads and writes the same safetensors files (same tensor names, fp16,
same metadata), so a file written here is read by :func:`model.torch_heads.load_heads` and the
other way round, and heads keep their SHA-256 identity.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.errors import DataError
from model_runtime.fsutil import atomic_write
from model_runtime.model.heads_format import (
    check_metadata,
    heads_metadata,
    read_metadata,
    reads_projection,
)

#: LayerNorm's epsilon (torch's default, as the heads are trained with)
LN_EPS = 1e-5
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: below float32's own)."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (_A[0] + t * (_A[1] + t * (_A[2] + t * (_A[3] + t * _A[4]))))
    return s * (1.0 - poly * np.exp(-a * a))


def gelu(a: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, torch's ``nn.GELU()``."""
    return a * 0.5 * (1.0 + erf(a / math.sqrt(2.0)))


def gelu_grad(a: np.ndarray) -> np.ndarray:
    """d gelu / d a = Phi(a) + a phi(a)."""
    cdf = 0.5 * (1.0 + erf(a / math.sqrt(2.0)))
    return cdf + a * np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by their norm (at least 1e-12), as ``F.normalize``."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def mlp_forward(w: dict[str, np.ndarray], prefix: str, x: np.ndarray,
                keep: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """tanh outputs of one head on ``x``; with ``keep`` the intermediates a backward pass needs."""
    z0 = x @ w[f"{prefix}.0.weight"].T + w[f"{prefix}.0.bias"]
    mu = z0.mean(axis=-1, keepdims=True)
    cen = z0 - mu
    rstd = 1.0 / np.sqrt((cen * cen).mean(axis=-1, keepdims=True) + LN_EPS)
    n = cen * rstd
    a = n * w[f"{prefix}.1.weight"] + w[f"{prefix}.1.bias"]
    u = gelu(a)
    h = np.tanh(u @ w[f"{prefix}.4.weight"].T + w[f"{prefix}.4.bias"])
    cache = {"x": x, "n": n, "rstd": rstd, "a": a, "u": u, "h": h} if keep else {}
    return h, cache


def mlp_backward(w: dict[str, np.ndarray], prefix: str, cache: dict[str, np.ndarray],
                 dh: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of the head's parameters given d loss / d tanh outputs ``dh``."""
    dz1 = dh * (1.0 - cache["h"] ** 2)
    grads = {f"{prefix}.4.weight": dz1.T @ cache["u"], f"{prefix}.4.bias": dz1.sum(axis=0)}
    da = (dz1 @ w[f"{prefix}.4.weight"]) * gelu_grad(cache["a"])
    n = cache["n"]
    grads[f"{prefix}.1.weight"] = (da * n).sum(axis=0)
    grads[f"{prefix}.1.bias"] = da.sum(axis=0)
    dn = da * w[f"{prefix}.1.weight"]
    dz0 = cache["rstd"] * (dn - dn.mean(axis=-1, keepdims=True)
                           - n * (dn * n).mean(axis=-1, keepdims=True))
    grads[f"{prefix}.0.weight"] = dz0.T @ cache["x"]
    grads[f"{prefix}.0.bias"] = dz0.sum(axis=0)
    return grads


@dataclass
class NumpyHeads:
    """Heads as float32 arrays keyed by the torch module's state-dict names, with metadata.

    Mirrors the inference API of :class:`model.torch_heads.HashHeads` (``encode_image_np``,
    ``encode_text_np``, ``project_image_np``, ``encode_image_proj_np``), so the evaluation code
    takes either."""

    weights: dict[str, np.ndarray]
    meta: dict[str, Any]
    train_info: dict[str, Any] = field(default_factory=dict)

    bits = property(lambda self: int(self.meta["bits"]))
    image_dim = property(lambda self: int(self.meta["image_dim"]))
    text_dim = property(lambda self: int(self.meta["text_dim"]))
    proj_dim = property(lambda self: int(self.meta.get("proj_dim") or 0))
    method = property(lambda self: str(self.meta.get("method") or "?"))
    backbone = property(lambda self: str(self.meta.get("backbone") or "?"))

    def copy(self) -> NumpyHeads:
        return NumpyHeads({k: v.copy() for k, v in self.weights.items()}, dict(self.meta))

    @property
    def image_input(self) -> str:
        """What the image head reads: ``projection`` or ``features`` (``heads_format``)."""
        return "projection" if reads_projection(self.meta) or not self.proj_dim else "features"

    def project_image_np(self, feats: np.ndarray) -> np.ndarray:
        """Image features -> the stored projection (L2-normalised features without one)."""
        x = l2_normalize(feats)
        if self.proj_dim:
            return (x - self.weights["image_proj.mean"]) @ self.weights["image_proj.matrix"]
        return x

    def encode_image_proj_np(self, proj: np.ndarray) -> np.ndarray:
        """Stored projections (float16 is fine) -> tanh outputs ``[N, bits]``."""
        if self.image_input == "features":
            raise DataError("These heads' image head reads the image features, not the stored "
                            "projection: fold it onto the projection first "
                            "(fold_onto_projection).")
        return self._batched("image_head", np.asarray(proj, dtype=np.float32))

    def encode_image_np(self, feats: np.ndarray) -> np.ndarray:
        if self.image_input == "features":
            return self._batched("image_head", l2_normalize(feats))
        return self.encode_image_proj_np(self.project_image_np(feats))

    def encode_text_np(self, feats: np.ndarray) -> np.ndarray:
        return self._batched("text_head", l2_normalize(feats))

    def _batched(self, prefix: str, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        if not len(x):
            return np.zeros((0, self.bits), np.float32)
        return np.concatenate([mlp_forward(self.weights, prefix, x[i : i + batch])[0]
                               for i in range(0, len(x), batch)])


def load_numpy_heads(path: str | os.PathLike, expect_backbone: str | None = None,
                     expect_bits: int | None = None,
                     expect_dims: tuple[int, int] | None = None) -> NumpyHeads:
    """Read a heads file into :class:`NumpyHeads` (float32); mismatches raise as ``load_heads``."""
    from safetensors.numpy import load_file

    path = Path(path)
    meta = read_metadata(path)
    check_metadata(path, meta, expect_backbone, expect_bits, expect_dims)
    try:
        weights = {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}
    except Exception as err:  # safetensors raises several types for corrupt files
        raise DataError(f"Hash-head weights in {path} are corrupt or incomplete: {err}") from err
    missing = [f"{p}.{i}.{t}" for p in ("image_head", "text_head") for i in (0, 1, 4)
               for t in ("weight", "bias") if f"{p}.{i}.{t}" not in weights]
    if meta["proj_dim"]:
        missing += [k for k in ("image_proj.mean", "image_proj.matrix") if k not in weights]
    if missing:
        raise DataError(f"Hash-head weights in {path} are incomplete: no {', '.join(missing)}")
    return NumpyHeads(weights, meta)


def save_numpy_heads(heads: NumpyHeads, path: str | os.PathLike, extra: dict | None = None
                     ) -> Path:
    """Write ``heads`` as the torch writer (``hashing.heads_io.save_heads``) does (fp16 tensors, same metadata)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float16) for k, v in heads.weights.items()}
    proj = None
    if heads.proj_dim:
        proj = (heads.weights["image_proj.mean"], heads.weights["image_proj.matrix"])
    meta = heads_metadata(heads.method, heads.backbone, heads.meta, proj, extra,
                          heads.image_input)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return path


def fold_onto_projection(heads: NumpyHeads) -> NumpyHeads:
    """Heads whose image head reads the stored projection, from heads whose image head reads
    the features: the first layer ``W x̂ + b`` becomes ``W (G p + mean) + b`` with ``G`` the
    projection's right inverse (``matrixᵀ G = I``), exact for features inside the projection's
    span. What adaptation starts from, since it re-hashes from stored projections only."""
    if heads.image_input != "features":
        return heads
    w = {k: v.copy() for k, v in heads.weights.items()}
    mean = w["image_proj.mean"].astype(np.float64)
    matrix = w["image_proj.matrix"].astype(np.float64)
    recon = matrix @ np.linalg.inv(matrix.T @ matrix)
    first = w["image_head.0.weight"].astype(np.float64)  # [hidden, image_dim]
    w["image_head.0.bias"] = (w["image_head.0.bias"] + first @ mean).astype(np.float32)
    w["image_head.0.weight"] = (first @ recon).astype(np.float32)
    meta = {**heads.meta, "image_input": "projection"}
    return NumpyHeads(w, meta, dict(heads.train_info))


def from_torch(module: Any) -> NumpyHeads:
    """:class:`NumpyHeads` of a torch ``HashHeads`` (for research code that trains in torch)."""
    if getattr(module, "raw_coords", False) or getattr(module, "beta", 1.0) != 1.0:
        raise ValueError("fold the projection and beta into the heads first")
    weights = {k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()}
    meta = {"bits": module.bits, "image_dim": module.image_dim, "text_dim": module.text_dim,
            "hidden": module.hidden, "proj_dim": module.proj_dim,
            "image_input": getattr(module, "image_input", "projection"),
            "method": getattr(module, "method", "?"), "backbone": getattr(module, "backbone", "?"),
            "extra": {}}
    return NumpyHeads(weights, meta)


def random_heads(bits: int, image_dim: int = 1280, text_dim: int = 384, hidden: int = 512,
                 proj_dim: int = 0, seed: int = 0, backbone: str = "effnetlite0-minilm",
                 method: str = "cach", image_input: str = "projection") -> NumpyHeads:
    """Untrained heads initialised as torch initialises ``HashHeads`` (uniform +-1/sqrt(fan_in)
    linear layers, unit LayerNorm; a random projection): for tests and tools without torch.
    ``image_input="features"``: the image head reads the features beside a projection."""
    rng = np.random.default_rng(seed)

    def linear(name: str, fan_in: int, out: int) -> dict[str, np.ndarray]:
        bound = 1.0 / math.sqrt(fan_in)
        return {f"{name}.weight": rng.uniform(-bound, bound, (out, fan_in)).astype(np.float32),
                f"{name}.bias": rng.uniform(-bound, bound, out).astype(np.float32)}

    w: dict[str, np.ndarray] = {}
    image_width = proj_dim if proj_dim and image_input == "projection" else image_dim
    for prefix, width in (("image_head", image_width), ("text_head", text_dim)):
        w |= linear(f"{prefix}.0", width, hidden) | linear(f"{prefix}.4", hidden, bits)
        w[f"{prefix}.1.weight"] = np.ones(hidden, np.float32)
        w[f"{prefix}.1.bias"] = np.zeros(hidden, np.float32)
    if proj_dim:
        w["image_proj.mean"] = np.zeros(image_dim, np.float32)
        w["image_proj.matrix"] = rng.standard_normal((image_dim, proj_dim)).astype(np.float32)
    meta = {"bits": bits, "image_dim": image_dim, "text_dim": text_dim, "hidden": hidden,
            "proj_dim": proj_dim, "method": method, "backbone": backbone, "extra": {},
            "image_input": image_input if proj_dim else "projection"}
    return NumpyHeads(w, meta)
