"""A small ONNX graph writer over ``onnx.helper``: operators in order, constants as initializers.

Used by :mod:`model_runtime.model.onnx_build`; needs numpy and onnx only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_runtime.fsutil import atomic_write_bytes

#: the opset of the torch export too (LayerNormalization needs 17)
OPSET = 17


class Graph:
    """Nodes and initializers of one graph; :meth:`op` returns the name of its single output."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0
        #: prefixes the names of nodes added without a name (e.g. ``heads``: int8 keeps them fp32)
        self.scope = ""

    def _fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, value: np.ndarray | np.generic) -> str:
        """An initializer holding ``value`` (its dtype kept); returns its name."""
        from onnx import numpy_helper

        name = self._fresh("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str = "", **attrs: Any) -> str:
        """Append one node; ``name`` prefixes its node name (e.g. ``heads/...``)."""
        from onnx import helper

        out = self._fresh(op_type.lower())
        prefix = name or self.scope
        node_name = f"{prefix}/{op_type}_{self._count}" if prefix else f"{op_type}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=node_name, **attrs))
        return out


def write_model(g: Graph, path: Path, inputs: list[tuple[str, int, list]],
                outputs: list[tuple[str, str, list]]) -> None:
    """Check the graph and write it atomically; ``inputs`` are ``(name, elem type, shape)``,
    ``outputs`` ``(name, internal value, shape)`` (renamed through an Identity)."""
    import onnx
    from onnx import helper

    nodes = list(g.nodes)
    for name, value, _shape in outputs:
        nodes.append(helper.make_node("Identity", [value], [name], name=f"output/{name}"))
    graph = helper.make_graph(
        nodes, g.name,
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, 1, s) for n, _v, s in outputs],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cach-onnx-build")
    model.ir_version = 8  # what ONNX Runtime and OpenVINO of the pinned versions all read
    onnx.checker.check_model(model)
    atomic_write_bytes(Path(path), model.SerializeToString())
