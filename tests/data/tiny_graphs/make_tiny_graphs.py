"""Writes the tiny ONNX graphs beside this file: the product's graph interface with a few KB of
made-up weights, so the engine path (model_runtime/model/compiled.py, onnx_model.py) is tested
without the packaged encoders.

- ``image.onnx``: ``pixels`` uint8 [N, 32, 32, 3] -> ``tanh`` float [N, 16] and ``proj`` float
  [N, 4]: the mean colour of each image quadrant (12 numbers in [0, 1]) times a matrix, + bias.
- ``text.onnx``: ``input_ids``, ``attention_mask`` int64 [N, L] -> ``tanh`` float [N, 16]: the
  mean of a 64-row embedding table over the unmasked tokens, then tanh.

Run ``python tests/data/tiny_graphs/make_tiny_graphs.py`` after changing it (needs numpy and
onnx); ``tests/runtime/test_tiny_graphs.py`` checks the files are what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE, BITS, PROJ, VOCAB = 32, 16, 4, 64
HERE = Path(__file__).resolve().parent


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    return {
        "w_image": rng.standard_normal((12, BITS)).astype(np.float32),
        "b_image": rng.standard_normal(BITS).astype(np.float32) * 0.1,
        "w_proj": rng.standard_normal((12, PROJ)).astype(np.float32),
        "embed": rng.standard_normal((VOCAB, BITS)).astype(np.float32),
    }


def _model(nodes: list, inputs: list, outputs: list, weights: dict[str, np.ndarray],
           name: str) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="cach-tiny-graphs")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def image_model() -> onnx.ModelProto:
    w = _weights()
    consts = {"w_image": w["w_image"], "b_image": w["b_image"], "w_proj": w["w_proj"],
              "quad_shape": np.array([0, 2, SIZE // 2, 2, SIZE // 2, 3], np.int64),
              "flat_shape": np.array([0, 12], np.int64), "scale": np.float32(1 / 255)}
    nodes = [
        helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["x", "quad_shape"], ["quads"]),  # N,2,16,2,16,3
        helper.make_node("ReduceMean", ["quads"], ["means"], axes=[2, 4], keepdims=0),
        helper.make_node("Reshape", ["means", "flat_shape"], ["flat"]),  # N,12 (row,col,rgb)
        helper.make_node("Mul", ["flat", "scale"], ["feats"]),
        helper.make_node("MatMul", ["feats", "w_image"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b_image"], ["logits"]),
        helper.make_node("Tanh", ["logits"], ["tanh"]),
        helper.make_node("MatMul", ["feats", "w_proj"], ["proj"]),
    ]
    inputs = [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["n", SIZE, SIZE, 3])]
    outputs = [helper.make_tensor_value_info("tanh", TensorProto.FLOAT, ["n", BITS]),
               helper.make_tensor_value_info("proj", TensorProto.FLOAT, ["n", PROJ])]
    return _model(nodes, inputs, outputs, consts, "tiny-image")


def text_model() -> onnx.ModelProto:
    consts = {"embed": _weights()["embed"], "axis_l": np.array([1], np.int64),
              "axis_last": np.array([2], np.int64)}
    nodes = [
        helper.make_node("Gather", ["embed", "input_ids"], ["tok"], axis=0),  # N,L,BITS
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis_last"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axis_l"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis_l"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["mean"]),
        helper.make_node("Tanh", ["mean"], ["tanh"]),
    ]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "l"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["n", "l"])]
    outputs = [helper.make_tensor_value_info("tanh", TensorProto.FLOAT, ["n", BITS])]
    return _model(nodes, inputs, outputs, consts, "tiny-text")


def reference_image(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``image.onnx`` computes, in NumPy."""
    w = _weights()
    n = len(pixels)
    quads = pixels.astype(np.float32).reshape(n, 2, SIZE // 2, 2, SIZE // 2, 3)
    feats = quads.mean(axis=(2, 4)).reshape(n, 12) / 255
    return np.tanh(feats @ w["w_image"] + w["b_image"]), feats @ w["w_proj"]


def reference_text(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What ``text.onnx`` computes, in NumPy."""
    tok = _weights()["embed"][ids] * mask[..., None]
    return np.tanh(tok.sum(axis=1) / mask.sum(axis=1, keepdims=True))


def graphs() -> dict[str, bytes]:
    return {"image.onnx": image_model().SerializeToString(),
            "text.onnx": text_model().SerializeToString()}


def main(folder: Path = HERE) -> int:
    for name, data in graphs().items():
        (folder / name).write_bytes(data)
        print(f"wrote {folder / name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
