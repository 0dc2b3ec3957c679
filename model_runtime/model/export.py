"""Export the torch model (frozen towers + hash heads) to two ONNX graphs.

* ``image.onnx``: ``pixels`` uint8 ``[N, S, S, 3]`` (NHWC, as tiles are read) -> ``tanh`` float32
  ``[N, bits]`` (and ``proj`` float32 ``[N, proj_dim]`` when the heads carry a projection).
  Normalisation (mean/std of the backbone config) happens inside the graph.
* ``text.onnx``: ``input_ids`` and ``attention_mask`` int64 ``[N, L]`` -> ``tanh`` float32.

The wrappers call the very modules the torch backend runs (``encoder.model.visual``, the HF text
transformer + pooler, ``HashHeads``), so the graphs compute what :class:`TorchHashModel` computes.
Only this export needs torch; the compiled backends that run the graphs never import it, and the
default backbone's graphs are built without torch (:mod:`model_runtime.model.onnx_build`): this
export serves the other backbones and ``CACH_GRAPH_BUILDER=torch``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.config import BackboneConfig
from model_runtime.errors import ConfigError
from model_runtime.model.heads import HeadsRef

LOG = logging.getLogger(__name__)

OPSET = 17
#: a small fixed probe: the exporter's torch outputs on it are kept to check the engine's
PROBE_IMAGES = 4
PROBE_TEXTS = ("many cars are parked in a parking lot", "a river", "two tennis courts near a road")


def _image_module(torch: Any, encoder: Any, heads: Any, config: BackboneConfig) -> Any:
    pre = config.preprocess

    class ImageGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual, self.heads = encoder.model.visual, heads
            self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1) * 255.0)

        def forward(self, pixels):  # uint8 NHWC, as TorchHashModel._pixels takes it
            x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std
            feats = self.visual(x).float()
            if config.normalize_image:
                feats = torch.nn.functional.normalize(feats, dim=-1)
            if getattr(self.heads, "proj_dim", 0):
                return self.heads.encode_image(feats), self.heads.project_image(feats)
            return self.heads.encode_image(feats)

    return ImageGraph().eval()


def _text_module(torch: Any, encoder: Any, heads: Any, config: BackboneConfig) -> Any:
    text = getattr(encoder.model, "text", None)
    if text is None or not hasattr(text, "transformer") or not hasattr(text, "pooler"):
        raise ConfigError(
            f"Backbone '{config.name}' has no Hugging Face text tower: the compiled backends "
            "support only those; use --backend torch.", code="backend_unavailable")

    class TextGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text, self.heads = text, heads

        def forward(self, input_ids, attention_mask):
            out = self.text.transformer(input_ids=input_ids, attention_mask=attention_mask)
            feats = self.text.proj(self.text.pooler(out, attention_mask)).float()
            if config.normalize_text:
                feats = torch.nn.functional.normalize(feats, dim=-1)
            return self.heads.encode_text(feats)

    return TextGraph().eval()


def _export(torch: Any, module: Any, args: tuple, path: Path, names: dict[str, list[str]]) -> None:
    axes = {n: {0: "n"} for n in names["in"] + names["out"]}
    if len(args) == 2:  # tokens: the sequence length varies too
        axes = {**axes, **{n: {0: "n", 1: "l"} for n in names["in"]}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, args, str(path), input_names=names["in"],
                          output_names=names["out"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)


def probe_pixels(size: int) -> np.ndarray:
    """A fixed uint8 probe batch (smooth gradients + noise, not flat) for export checks."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = (ramp[None, :, None] + ramp[:, None, None]) / 2
    noise = rng.normal(0, 40, (PROBE_IMAGES, size, size, 3))
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


def encoder_loaded(config: BackboneConfig) -> bool:
    from model_runtime.model.torch_model import _ENCODERS

    return any(name == config.name for name, _ in _ENCODERS)


def export_onnx(config: BackboneConfig, heads: HeadsRef, folder: Path, tokenize: Any,
                names: tuple[str, ...] = ("image", "text")) -> dict[str, np.ndarray]:
    """Write ``<name>.onnx`` for each of ``names`` into ``folder`` with torch; return torch's
    tanh outputs on the probe (:func:`probe_pixels`, :data:`PROBE_TEXTS`) by graph name, to
    check the engine. Without torch: a coded :class:`ConfigError` (the torch-free builder,
    :mod:`model_runtime.model.onnx_build`, serves the backbones it knows)."""
    try:
        import torch
    except ImportError as err:
        raise ConfigError(
            f"Building the graphs of backbone '{config.name}' needs torch, which this runtime "
            "does not hold; install the full environment (scripts/setup.sh --with-torch).",
            code="backend_unavailable") from err

    from model_runtime.model.torch_heads import load_heads
    from model_runtime.model.torch_model import release_encoder, shared_encoder

    loaded_before = encoder_loaded(config)
    encoder = shared_encoder(config, "cpu")
    try:
        module = load_heads(heads.path, expect_backbone=config.name, expect_bits=heads.bits,
                            device="cpu").eval()
        exporters = {"image": _export_image, "text": _export_text}
        return {name: exporters[name](torch, config, folder, tokenize, encoder, module)
                for name in names}
    finally:
        if not loaded_before:  # a worker that only exports keeps no torch model in memory
            release_encoder(config)


def _export_image(torch: Any, config: BackboneConfig, folder: Path, tokenize: Any,
                  encoder: Any, module: Any) -> np.ndarray:
    image = _image_module(torch, encoder, module, config)
    pixels = torch.from_numpy(probe_pixels(config.preprocess.size))
    out_names = ["tanh", "proj"] if getattr(module, "proj_dim", 0) else ["tanh"]
    _export(torch, image, (pixels,), folder / "image.onnx", {"in": ["pixels"], "out": out_names})
    with torch.inference_mode():
        out = image(pixels)
    return (out[0] if isinstance(out, tuple) else out).numpy()


def _export_text(torch: Any, config: BackboneConfig, folder: Path, tokenize: Any,
                 encoder: Any, module: Any) -> np.ndarray:
    text = _text_module(torch, encoder, module, config)
    ids, mask = tokenize(list(PROBE_TEXTS))
    targs = (torch.from_numpy(ids), torch.from_numpy(mask))
    _export(torch, text, targs, folder / "text.onnx",
            {"in": ["input_ids", "attention_mask"], "out": ["tanh"]})
    with torch.inference_mode():
        return text(*targs).numpy()
