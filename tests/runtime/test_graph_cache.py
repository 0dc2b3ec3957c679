"""The exported-graph cache: reused when intact, rebuilt when corrupt or stale, never shared
across backbone configs, heads, engines or precisions. Fast: the builds here write small files
(the real export runs in test_engines.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from model_runtime.config import get_backbone_config
from model_runtime.model.graphs import (
    MANIFEST,
    GraphCacheError,
    cached_graphs,
    engine_version,
    graph_folder,
    key_parts,
    verify,
)
from model_runtime.model.heads import shipped_heads


class Builds:
    """A build that writes two small graph files and counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, folder):
        self.calls += 1
        (folder / "image.onnx").write_bytes(b"image graph %d" % self.calls * 1000)
        if self.fail:
            raise RuntimeError("export crashed")
        (folder / "text.onnx").write_bytes(b"text graph")
        return {"probe": {"image_max_abs_diff": 0.0}}


@pytest.fixture
def parts():
    return key_parts(get_backbone_config("effnetlite0-minilm"), shipped_heads("effnetlite0-minilm", 64),
                     engine_version("onnxruntime"), "fp32")


def test_an_intact_folder_is_reused(tmp_path, parts):
    build = Builds()
    first = cached_graphs(parts, build, tmp_path)
    again = cached_graphs(parts, build, tmp_path)
    assert build.calls == 1 and first.folder == again.folder
    assert first.built_s is not None and again.built_s is None
    assert again.export_s == first.manifest["export_s"]
    assert set(first.manifest["files"]) == {"image.onnx", "text.onnx"}
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name]  # no leftovers


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete", "bad_manifest",
                                    "stale_manifest"])
def test_a_corrupt_or_stale_folder_is_rebuilt_never_used(tmp_path, parts, damage):
    build = Builds()
    folder = cached_graphs(parts, build, tmp_path).folder
    graph = folder / "image.onnx"
    if damage == "flip_byte":
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))
    elif damage == "truncate":
        graph.write_bytes(graph.read_bytes()[:100])
    elif damage == "delete":
        graph.unlink()
    elif damage == "bad_manifest":
        (folder / MANIFEST).write_text("{not json")
    else:  # a manifest from another export format in the same folder
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["key"]["format"] = -1
        (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(GraphCacheError):
        verify(folder, parts)
    rebuilt = cached_graphs(parts, build, tmp_path)
    assert build.calls == 2 and rebuilt.built_s is not None
    verify(rebuilt.folder, parts)
    assert (rebuilt.folder / "image.onnx").read_bytes().startswith(b"image graph 2")


def test_a_failed_export_leaves_nothing_behind(tmp_path, parts):
    with pytest.raises(RuntimeError, match="export crashed"):
        cached_graphs(parts, Builds(fail=True), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_every_key_part_gives_its_own_folder(parts):
    base_cfg = get_backbone_config("effnetlite0-minilm")
    other_cfg = dataclasses.replace(base_cfg, preprocess=dataclasses.replace(
        base_cfg.preprocess, interpolation="bilinear"))
    heads64 = shipped_heads("effnetlite0-minilm", 64)
    variants = [
        key_parts(other_cfg, heads64, engine_version("onnxruntime"), "fp32"),
        key_parts(base_cfg, shipped_heads("effnetlite0-minilm", 32), engine_version("onnxruntime"),
                  "fp32"),
        key_parts(base_cfg, heads64, "onnxruntime==0.0.1", "fp32"),
        key_parts(base_cfg, heads64, engine_version("onnxruntime"), "int8"),
        key_parts(base_cfg, heads64, engine_version("openvino"), "fp32"),
        key_parts(base_cfg, heads64, engine_version("onnxruntime"), "int8", "another recipe"),
    ]
    folders = {graph_folder(p) for p in [parts, *variants]}
    assert len(folders) == len(variants) + 1
    # the same backbone name with another config content is another key, not a reuse
    assert variants[0]["backbone"] == parts["backbone"]
    assert variants[0]["backbone_config_sha256"] != parts["backbone_config_sha256"]


def test_a_folder_for_another_key_is_not_accepted(tmp_path, parts):
    folder = cached_graphs(parts, Builds(), tmp_path).folder
    other = dict(parts, heads_sha256="0" * 64)
    with pytest.raises(GraphCacheError, match="another model"):
        verify(folder, other)


OPENVINO_CONVERT = """
import sys, types
from pathlib import Path
import onnx
from onnx import TensorProto, helper
from model_runtime.model.openvino_model import OpenVinoHashModel
folder = Path(sys.argv[1])
for name in ("image", "text"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Tanh", ["x"], ["y"])], name, [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              folder / f"{name}.onnx")
OpenVinoHashModel._convert(types.SimpleNamespace(precision="fp32"), folder)
print(sorted(p.name for p in folder.iterdir()))
from openvino.tools.ovc import telemetry_utils
print([m for m in sys.modules if m.startswith("openvino_telemetry.")], telemetry_utils.tm.__name__)
"""


def test_openvino_conversion_loads_no_telemetry(tmp_path):
    """``import openvino`` and its converter send usage telemetry over the network by default;
    the backend converts its graphs with the telemetry package never loaded (OpenVINO's stub
    instead)."""
    import subprocess
    import sys

    pytest.importorskip("openvino")
    out = subprocess.run([sys.executable, "-c", OPENVINO_CONVERT, str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    files, telemetry = out.stdout.strip().splitlines()[-2:]
    assert "image.xml" in files and "text.xml" in files and "image.onnx" not in files
    assert telemetry == "[] openvino.tools.ovc.telemetry_stub"
