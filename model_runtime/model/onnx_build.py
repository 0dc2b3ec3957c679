"""Build ``image.onnx`` and ``text.onnx`` from the weight files, without torch.

The graphs have the inputs and outputs of :mod:`model_runtime.model.export` (the torch export):

* ``image.onnx``: ``pixels`` uint8 ``[N, S, S, 3]`` -> ``tanh`` ``[N, bits]`` (and ``proj``
  ``[N, proj_dim]`` when the heads carry a projection);
* ``text.onnx``: ``input_ids``, ``attention_mask`` int64 ``[N, L]`` -> ``tanh`` ``[N, bits]``.

They are written node by node with ``onnx.helper`` from NumPy arrays: the EfficientNet-Lite0
trunk of timm's ``tf_efficientnet_lite0`` (BatchNorm folded into the convolutions, TensorFlow
"same" padding, ReLU6, global average pool) read from its ``.pth`` file by
:mod:`model_runtime.model.weights_np`; the BERT encoder of all-MiniLM-L6-v2 from its
``model.safetensors`` and ``config.json`` (mean pooling, L2 normalisation); then the hash heads
as :class:`~model_runtime.model.torch_heads.HashHeads` computes them. Only numpy, onnx and
safetensors are needed. Backbones it does not know (RemoteCLIP's ViT) raise a coded
:class:`ConfigError`; the torch export still serves them.

Entry point: :func:`build_onnx` (``supports`` says whether a backbone can be built).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.config import BackboneConfig, open_clip_model_cfg, resolve_path
from model_runtime.errors import ConfigError, DataError
from model_runtime.model.heads import HeadsRef
from model_runtime.model.onnx_graph import OPSET, Graph, write_model
from model_runtime.model.weights_np import load_heads_np, load_safetensors, load_torch_file

#: timm's ``tf_efficientnet_lite0`` stages: (block kind, repeats, kernel, stride, expand, out)
LITE0_STAGES = (
    ("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80), ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
LITE0_STEM, LITE0_FEATURES, TF_BN_EPS = 32, 1280, 1e-3
#: the PyTorch LayerNorm default, which the hash heads use
HEADS_LN_EPS = 1e-5


def supports(config: BackboneConfig) -> bool:
    """Whether :func:`build_onnx` can build this backbone's graphs (no torch needed)."""
    try:
        _check_supported(config)
    except ConfigError:
        return False
    return True


def _check_supported(config: BackboneConfig) -> dict[str, Any]:
    cfg = config.open_clip
    vision = (cfg or {}).get("vision_cfg", {})
    text = (cfg or {}).get("text_cfg", {})
    ok = (cfg is not None and config.image_weights is not None
          and vision.get("timm_model_name") == "tf_efficientnet_lite0"
          and vision.get("timm_pool", "avg") == "avg"
          and vision.get("timm_proj") in (None, "", "none")
          and config.image_weights.key_mapping == "by_order"
          and text.get("hf_pooler_type") == "mean_pooler"
          and not text.get("hf_proj_type")
          and config.text_dim == cfg.get("embed_dim") and config.image_dim == LITE0_FEATURES)
    if not ok:
        raise ConfigError(
            f"Backbone '{config.name}' cannot be built without torch (the torch-free builder "
            "knows EfficientNet-Lite0 + a mean-pooled BERT text tower); install the full "
            "environment with torch to export it.", code="backend_unavailable")
    return open_clip_model_cfg(config)


# --- image tower ---------------------------------------------------------------------------------
class _Weights:
    """The trunk's tensors in file order (keys paired by order, as the torch loader does)."""

    def __init__(self, tensors: dict[str, np.ndarray], path: Path) -> None:
        self._items = [(k, v) for k, v in tensors.items() if not k.endswith("num_batches_tracked")]
        self._pos, self._path = 0, path

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._pos >= len(self._items):
            raise ConfigError(f"{self._path}: too few tensors for EfficientNet-Lite0")
        key, arr = self._items[self._pos]
        if tuple(arr.shape) != tuple(shape):
            raise ConfigError(f"{self._path}: tensor {key} {tuple(arr.shape)} does not fit "
                              f"{tuple(shape)}; the file is for another architecture.")
        self._pos += 1
        return arr.astype(np.float64)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TensorFlow 'same' padding (the extra pixel at the end) and the output size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    begin = total // 2
    return [begin, begin, total - begin, total - begin], out


def _conv_bn(g: Graph, x: str, w: _Weights, cin: int, cout: int, k: int, stride: int,
             groups: int, size: int, act: bool) -> tuple[str, int]:
    """Conv (no bias) + BatchNorm folded into one Conv, then ReLU6 when ``act``."""
    weight = w.take((cout, cin // groups, k, k))
    gamma, beta, mean, var = (w.take((cout,)) for _ in range(4))
    scale = gamma / np.sqrt(var + TF_BN_EPS)
    folded = (weight * scale[:, None, None, None]).astype(np.float32)
    bias = (beta - mean * scale).astype(np.float32)
    pads, out = _same_pads(size, k, stride)
    y = g.op("Conv", [x, g.const(folded), g.const(bias)], kernel_shape=[k, k],
             strides=[stride, stride], pads=pads, group=groups)
    if act:
        y = g.op("Clip", [y, g.const(np.float32(0)), g.const(np.float32(6))])
    return y, out


def _lite0_trunk(g: Graph, x: str, w: _Weights, size: int) -> str:
    """The trunk on normalised NCHW input -> pooled features ``[N, 1280]``."""
    x, size = _conv_bn(g, x, w, 3, LITE0_STEM, 3, 2, 1, size, True)
    cin = LITE0_STEM
    for kind, repeats, k, stride, expand, cout in LITE0_STAGES:
        for i in range(repeats):
            s = stride if i == 0 else 1
            inp, mid = x, cin * expand
            if kind == "ir":
                x, _ = _conv_bn(g, x, w, cin, mid, 1, 1, 1, size, True)
            x, size = _conv_bn(g, x, w, mid, mid, k, s, mid, size, True)
            x, _ = _conv_bn(g, x, w, mid, cout, 1, 1, 1, size, False)
            if s == 1 and cin == cout:
                x = g.op("Add", [x, inp])
            cin = cout
    x, _ = _conv_bn(g, x, w, cin, LITE0_FEATURES, 1, 1, 1, size, True)
    return g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)


# --- text tower ----------------------------------------------------------------------------------
def _linear(g: Graph, x: str, weight: np.ndarray, bias: np.ndarray, name: str = "") -> str:
    y = g.op("MatMul", [x, g.const(np.ascontiguousarray(weight.T, np.float32))], name=name)
    return g.op("Add", [y, g.const(bias.astype(np.float32))], name=name and f"{name}/bias")


def _layer_norm(g: Graph, x: str, weight: np.ndarray, bias: np.ndarray, eps: float,
                name: str = "") -> str:
    return g.op("LayerNormalization", [x, g.const(weight.astype(np.float32)),
                                       g.const(bias.astype(np.float32))],
                axis=-1, epsilon=float(eps), name=name)


def _gelu(g: Graph, x: str, name: str = "") -> str:
    """Exact (erf) GELU: ``0.5 x (1 + erf(x / sqrt 2))``, as torch's default."""
    inner = g.op("Erf", [g.op("Div", [x, g.const(np.float32(np.sqrt(2.0)))], name=name)])
    one = g.op("Add", [inner, g.const(np.float32(1.0))])
    return g.op("Mul", [g.op("Mul", [x, one]), g.const(np.float32(0.5))], name=name)


def _normalize(g: Graph, x: str, name: str = "") -> str:
    """``F.normalize(x, dim=-1)``: ``x / max(||x||, 1e-12)``."""
    norm = g.op("ReduceL2", [x], axes=[-1], keepdims=1, name=name)
    return g.op("Div", [x, g.op("Max", [norm, g.const(np.float32(1e-12))])], name=name)


def _attention(g: Graph, x: str, t: dict, p: str, mask: str, heads: int, width: int) -> str:
    head = width // heads
    split = g.const(np.array([0, 0, heads, head], np.int64))

    def proj(name: str, perm: list[int]) -> str:
        y = _linear(g, x, t[f"{p}.attention.self.{name}.weight"],
                    t[f"{p}.attention.self.{name}.bias"])
        return g.op("Transpose", [g.op("Reshape", [y, split])], perm=perm)

    q, k, v = proj("query", [0, 2, 1, 3]), proj("key", [0, 2, 3, 1]), proj("value", [0, 2, 1, 3])
    scores = g.op("Div", [g.op("MatMul", [q, k]), g.const(np.float32(np.sqrt(head)))])
    probs = g.op("Softmax", [g.op("Add", [scores, mask])], axis=-1)
    ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, g.const(np.array([0, 0, width], np.int64))])
    return _linear(g, ctx, t[f"{p}.attention.output.dense.weight"],
                   t[f"{p}.attention.output.dense.bias"])


def _bert_layer(g: Graph, x: str, t: dict, i: int, mask: str, cfg: dict) -> str:
    p, eps = f"encoder.layer.{i}", cfg["layer_norm_eps"]
    att = _attention(g, x, t, p, mask, cfg["num_attention_heads"], cfg["hidden_size"])
    x = _layer_norm(g, g.op("Add", [att, x]), t[f"{p}.attention.output.LayerNorm.weight"],
                    t[f"{p}.attention.output.LayerNorm.bias"], eps)
    mid = _gelu(g, _linear(g, x, t[f"{p}.intermediate.dense.weight"],
                           t[f"{p}.intermediate.dense.bias"]))
    out = _linear(g, mid, t[f"{p}.output.dense.weight"], t[f"{p}.output.dense.bias"])
    return _layer_norm(g, g.op("Add", [out, x]), t[f"{p}.output.LayerNorm.weight"],
                       t[f"{p}.output.LayerNorm.bias"], eps)


def _bert_config(folder: Path) -> dict:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"Cannot read the text tower's config.json in {folder}: {err}") from err
    if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu" or cfg.get(
            "position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"The text tower in {folder} is not a plain BERT encoder (erf GELU, "
                          "absolute positions): export it with torch.", code="backend_unavailable")
    return cfg


def _bert_tensors(folder: Path) -> dict[str, np.ndarray]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise DataError(f"No model.safetensors in the text tower folder {folder}")
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        tensors.update(load_safetensors(path))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _bert_pooled(g: Graph, ids: str, mask: str, folder: Path) -> str:
    """Mean-pooled last hidden states ``[N, hidden]`` of the BERT encoder in ``folder``."""
    cfg, t = _bert_config(folder), _bert_tensors(folder)
    eps = cfg["layer_norm_eps"]
    words = g.op("Gather", [g.const(t["embeddings.word_embeddings.weight"]), ids], axis=0)
    length = g.op("Gather", [g.op("Shape", [ids]), g.const(np.int64(1))], axis=0)
    positions = g.op("Range", [g.const(np.int64(0)), length, g.const(np.int64(1))])
    pos = g.op("Gather", [g.const(t["embeddings.position_embeddings.weight"]), positions], axis=0)
    token_type = t["embeddings.token_type_embeddings.weight"][0]  # no token_type_ids: all 0
    x = g.op("Add", [g.op("Add", [words, pos]), g.const(token_type)])
    x = _layer_norm(g, x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    maskf = g.op("Cast", [mask], to=1)  # FLOAT
    # as transformers: (1 - mask) * the lowest float32, shaped [N, 1, 1, L]
    neg = g.op("Mul", [g.op("Sub", [g.const(np.float32(1.0)), maskf]),
                       g.const(np.float32(np.finfo(np.float32).min))])
    ext = g.op("Unsqueeze", [neg, g.const(np.array([1, 2], np.int64))])
    for i in range(cfg["num_hidden_layers"]):
        x = _bert_layer(g, x, t, i, ext, cfg)
    weights = g.op("Unsqueeze", [maskf, g.const(np.array([-1], np.int64))])
    axis = g.const(np.array([1], np.int64))
    total = g.op("ReduceSum", [g.op("Mul", [x, weights]), axis], keepdims=0)
    return g.op("Div", [total, g.op("ReduceSum", [weights, axis], keepdims=0)])


# --- hash heads ----------------------------------------------------------------------------------
def _mlp_tanh(g: Graph, x: str, t: dict, prefix: str, name: str) -> str:
    """``tanh(Linear(GELU(LayerNorm(Linear(x)))))`` as :func:`model.torch_heads._mlp` in eval mode."""
    h = _linear(g, x, t[f"{prefix}.0.weight"], t[f"{prefix}.0.bias"], name=f"{name}/fc0")
    h = _layer_norm(g, h, t[f"{prefix}.1.weight"], t[f"{prefix}.1.bias"], HEADS_LN_EPS,
                    name=f"{name}/ln")
    h = _gelu(g, h, name=f"{name}/gelu")
    h = _linear(g, h, t[f"{prefix}.4.weight"], t[f"{prefix}.4.bias"], name=f"{name}/fc4")
    return g.op("Tanh", [h], name=f"{name}/tanh")


def _image_heads(g: Graph, feats: str, t: dict, meta: dict) -> list[str]:
    """Image features -> ``[tanh, proj]`` (``[tanh]`` without a stored projection)."""
    proj = unit = _normalize(g, feats, name="heads/image_norm")
    if meta["proj_dim"]:
        centred = g.op("Sub", [proj, g.const(t["image_proj.mean"])], name="heads/proj_sub")
        proj = g.op("MatMul", [centred, g.const(t["image_proj.matrix"])], name="heads/proj")
    head_input = unit if meta.get("image_input") == "features" else proj
    tanh = _mlp_tanh(g, head_input, t, "image_head", "heads/image_head")
    return [tanh, proj] if meta["proj_dim"] else [tanh]


# --- the two graphs ------------------------------------------------------------------------------
def _heads_np(config: BackboneConfig, heads: HeadsRef) -> tuple[dict, dict]:
    from model_runtime.model.heads_format import check_metadata

    tensors, meta = load_heads_np(heads.path)
    check_metadata(heads.path, meta, expect_backbone=config.name, expect_bits=heads.bits)
    return tensors, meta


def build_image_graph(config: BackboneConfig, heads: HeadsRef, path: Path) -> None:
    """Write ``image.onnx`` (pixels -> tanh [, proj]) to ``path``."""
    _check_supported(config)
    tensors, meta = _heads_np(config, heads)
    wpath = resolve_path(config.image_weights.path)
    if not wpath.is_file():
        raise ConfigError(f"Image tower weights not found: {wpath}")
    weights = _Weights(load_torch_file(wpath), wpath)
    pre, size = config.preprocess, config.preprocess.size
    g = Graph("cach_image")
    x = g.op("Cast", [g.op("Transpose", ["pixels"], perm=[0, 3, 1, 2])], to=1)
    mean = np.array(pre.mean, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
    std = np.array(pre.std, np.float32).reshape(1, 3, 1, 1) * np.float32(255.0)
    x = g.op("Div", [g.op("Sub", [x, g.const(mean)]), g.const(std)])
    feats = _lite0_trunk(g, x, weights, size)
    if config.normalize_image:
        feats = _normalize(g, feats)
    g.scope = "heads"  # every node of the heads is named heads/... (int8 keeps them in fp32)
    outs = _image_heads(g, feats, tensors, meta)
    named = [("tanh", heads.bits), ("proj", meta["proj_dim"])][: len(outs)]
    write_model(g, path, inputs=[("pixels", 2, ["n", size, size, 3])],  # UINT8
                outputs=[(n, o, ["n", w]) for (n, w), o in zip(named, outs, strict=True)])


def build_text_graph(config: BackboneConfig, heads: HeadsRef, path: Path) -> None:
    """Write ``text.onnx`` (input_ids, attention_mask -> tanh) to ``path``."""
    model_cfg = _check_supported(config)
    tensors, _meta = _heads_np(config, heads)
    folder = Path(model_cfg["text_cfg"]["hf_model_name"])
    if not folder.is_dir():
        raise ConfigError(f"Text tower folder not found: {folder}")
    g = Graph("cach_text")
    feats = _bert_pooled(g, "input_ids", "attention_mask", folder)
    if config.normalize_text:
        feats = _normalize(g, feats)
    g.scope = "heads"
    feats = _normalize(g, feats, name="heads/text_norm")
    tanh = _mlp_tanh(g, feats, tensors, "text_head", "heads/text_head")
    write_model(g, path, inputs=[("input_ids", 7, ["n", "l"]), ("attention_mask", 7, ["n", "l"])],
                outputs=[("tanh", tanh, ["n", heads.bits])])


def build_onnx(config: BackboneConfig, heads: HeadsRef, folder: Path,
               names: tuple[str, ...] = ("image", "text")) -> None:
    """Write ``<name>.onnx`` for each of ``names`` into ``folder`` (no torch)."""
    builders = {"image": build_image_graph, "text": build_text_graph}
    for name in names:
        builders[name](config, heads, Path(folder) / f"{name}.onnx")


__all__ = ["OPSET", "build_image_graph", "build_onnx", "build_text_graph", "supports"]
