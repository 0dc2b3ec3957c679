"""The exported-graph cache: reused when intact, rebuilt when corrupt or stale, never shared
across backbone configs, heads, engines or precisions; keyed by content (found again from another
path of the same weights, never by a path or mtime), one text graph for heads that differ only in
their image head, and bounded (LRU eviction, ``cach cache``). Fast: the builds here write small
files (the real builds run in test_onnx_build.py and test_engines.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
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
from model_runtime.model.heads import read_heads, shipped_heads


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """The content-hash sidecar and any cache folder go to a fresh folder, never $HOME."""
    monkeypatch.setenv("CACH_CACHE", str(tmp_path_factory.mktemp("cach-cache")))
    monkeypatch.delenv("CACH_GRAPH_CACHE", raising=False)
    monkeypatch.delenv("CACH_GRAPH_CACHE_MB", raising=False)


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


# --- keyed by content ---------------------------------------------------------------------------
def _relocated(tmp_path, name: str):
    """The default backbone with its weight files at another place (the image weights and the
    text config copied with another mtime, the 87 MB safetensors linked) and a heads copy."""
    import os
    import shutil

    from model_runtime.config import config_from_dict, open_clip_model_cfg, resolve_path

    base = get_backbone_config("effnetlite0-minilm")
    where = tmp_path / name
    text_src = open_clip_model_cfg(base)["text_cfg"]["hf_model_name"]
    (where / "text").mkdir(parents=True)
    pth = where / "lite0.pth"
    shutil.copyfile(resolve_path(base.image_weights.path), pth)
    shutil.copyfile(f"{text_src}/config.json", where / "text" / "config.json")
    os.symlink(f"{text_src}/model.safetensors", where / "text" / "model.safetensors")
    for path in (pth, where / "text" / "config.json"):
        os.utime(path, (1_000_000 + len(name), 1_000_000 + len(name)))
    raw = dataclasses.asdict(base)
    raw["image_weights"]["path"] = str(pth)
    raw["open_clip"]["text_cfg"].update(hf_model_name=str(where / "text"),
                                        hf_tokenizer_name=str(where / "text"))
    heads = where / "heads.safetensors"
    shutil.copyfile(shipped_heads("effnetlite0-minilm", 64).path, heads)
    return config_from_dict(raw), read_heads(heads)


@pytest.mark.parametrize("graph", ["image", "text"])
def test_the_same_weights_at_another_path_find_the_same_graphs(tmp_path, graph):
    """Graphs made in one environment are found from another: same content, same folder (no
    path and no mtime in the key)."""
    (cfg_a, heads_a), (cfg_b, heads_b) = _relocated(tmp_path, "a"), _relocated(tmp_path, "bb")
    assert heads_a.path != heads_b.path
    parts_a = key_parts(cfg_a, heads_a, "onnxruntime==1", "fp32", graph=graph)
    parts_b = key_parts(cfg_b, heads_b, "onnxruntime==1", "fp32", graph=graph)
    assert parts_a == parts_b
    assert str(tmp_path) not in json.dumps(parts_a)
    build = Builds()
    root = tmp_path / "graphs"
    first = cached_graphs(parts_a, build, root)
    again = cached_graphs(parts_b, build, root)
    assert build.calls == 1 and first.folder == again.folder
    # the shipped location (another path, the original mtimes) gives the same key too
    shipped = key_parts(get_backbone_config("effnetlite0-minilm"),
                        shipped_heads("effnetlite0-minilm", 64), "onnxruntime==1", "fp32",
                        graph=graph)
    assert shipped == parts_a


def test_other_weight_content_at_the_same_path_is_another_key(tmp_path):
    """The sidecar of hashes only skips re-reading an unchanged file: new content at the same
    path (even with the same size) gives another key."""
    import os

    cfg, heads = _relocated(tmp_path, "a")
    before = key_parts(cfg, heads, "onnxruntime==1", "fp32", graph="image")
    pth = cfg.image_weights.path
    data = bytearray(open(pth, "rb").read())
    data[-10] ^= 0xFF
    open(pth, "wb").write(bytes(data))
    os.utime(pth, (2_000_000, 2_000_000))
    after = key_parts(cfg, heads, "onnxruntime==1", "fp32", graph="image")
    assert after["weights_sha256"] != before["weights_sha256"]
    assert graph_folder(after) != graph_folder(before)


def _adapted_copy(tmp_path, heads):
    """A heads file whose image head differs (as adaptation leaves it), text head unchanged."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(heads.path), framework="numpy") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["image_head.4.bias"] = tensors["image_head.4.bias"] + 0.5
    path = tmp_path / "adapted.safetensors"
    save_file(tensors, str(path), metadata=meta)
    return read_heads(path)


def test_adapted_heads_share_the_text_graph(tmp_path):
    """An adapted image head adds an image graph only: the 91 MB text graph is stored once."""
    shipped = shipped_heads("effnetlite0-minilm", 64)
    adapted = _adapted_copy(tmp_path, shipped)
    cfg = get_backbone_config("effnetlite0-minilm")
    assert adapted.sha != shipped.sha
    for graph, shared in (("text", True), ("image", False)):
        a = key_parts(cfg, shipped, "onnxruntime==1", "fp32", graph=graph)
        b = key_parts(cfg, adapted, "onnxruntime==1", "fp32", graph=graph)
        assert (a == b) is shared, graph


def test_int8_models_share_the_fp32_text_graph():
    cfg, heads = get_backbone_config("effnetlite0-minilm"), shipped_heads("effnetlite0-minilm", 64)
    fp32 = key_parts(cfg, heads, "onnxruntime==1", "fp32", graph="text")
    int8 = key_parts(cfg, heads, "onnxruntime==1", "int8", "recipe", graph="text")
    assert fp32 == int8
    assert key_parts(cfg, heads, "onnxruntime==1", "int8", "recipe") != key_parts(
        cfg, heads, "onnxruntime==1", "fp32")


# --- bounded --------------------------------------------------------------------------------------
def _sized_build(size: int):
    def build(folder):
        (folder / "image.onnx").write_bytes(b"x" * size)
        return {}
    return build


def _aged(folder, seconds_ago: float) -> None:
    import os
    import time

    stamp = time.time() - seconds_ago
    os.utime(folder / ".last_used", (stamp, stamp))


def test_eviction_drops_the_least_recently_used_beyond_the_cap(tmp_path, parts, monkeypatch):
    from model_runtime.model.graphs import cache_entries, evict

    root = tmp_path / "graphs"
    folders = []
    for i in range(3):
        folders.append(cached_graphs(dict(parts, engine=f"e=={i}"), _sized_build(400_000),
                                     root).folder)
        _aged(folders[-1], 1000 - i * 100)  # 0 is the oldest
    cached_graphs(dict(parts, engine="e==0"), _sized_build(1), root)  # a use: 0 is the newest
    # an unreadable folder of an older format goes first, whatever the cap
    old = root / "old-format-folder"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"key": {"format": 1}}))
    removed = evict(root, cap=900_000)
    assert [e.folder for e in removed] == [old, folders[1]]
    assert {e.folder for e in cache_entries(root)} == {folders[0], folders[2]}
    # a build beyond the cap evicts on its own and never the folder it just made
    monkeypatch.setenv("CACH_GRAPH_CACHE_MB", "0")
    newest = cached_graphs(dict(parts, engine="e==9"), _sized_build(10), root).folder
    assert [e.folder for e in cache_entries(root)] == [newest]


def test_cach_cache_lists_sizes_and_prunes(tmp_path, parts, monkeypatch, capsys):
    from model_runtime.cli import main
    from model_runtime.model.graphs import graphs_root

    monkeypatch.setenv("CACH_GRAPH_CACHE", str(tmp_path / "shared-graphs"))
    root = graphs_root()
    assert root == tmp_path / "shared-graphs" and graph_folder(parts).parent == root
    for i in range(2):
        cached_graphs(dict(parts, engine=f"e=={i}"), _sized_build(3 << 20), root)
    assert main(["cache"]) == 0
    listing = capsys.readouterr().out
    assert listing.count(" MB ") >= 2 and "2 folder(s)" in listing and "image" in listing
    assert main(["cache", "prune", "--max-mb", "4"]) == 0
    assert "pruned 1 folder(s)" in capsys.readouterr().out
    assert main(["cache", "prune", "--all"]) == 0
    assert "0 folder(s)" in capsys.readouterr().out
    assert [p for p in root.iterdir() if p.is_dir()] == []


def test_a_model_with_adapted_heads_adds_only_an_image_graph(tmp_path, monkeypatch):
    """Through the real backend (graphs built without torch): shipped heads and heads adapted
    from them hold one text graph and two image graphs; a second load builds nothing."""
    from model_runtime.model import load_model
    from model_runtime.model.graphs import cache_entries, graphs_root

    monkeypatch.setenv("CACH_GRAPH_CACHE", str(tmp_path / "graphs"))
    monkeypatch.delenv("CACH_GRAPH_BUILDER", raising=False)
    shipped = shipped_heads("effnetlite0-minilm", 16)
    adapted = _adapted_copy(tmp_path, shipped)
    first = load_model(backend="onnx", heads=shipped.path)
    second = load_model(backend="onnx", heads=adapted.path)
    assert first.first_export_s is not None and second.first_export_s is not None
    kinds = sorted(e.key["graph"] for e in cache_entries(graphs_root()))
    assert kinds == ["image", "image", "text"]
    assert second.graphs["text"].folder == first.graphs["text"].folder
    assert {second.graphs["text"].manifest.get("builder")} == {"numpy"}
    image_mb = max(e.size for e in cache_entries(graphs_root()) if e.key["graph"] == "image")
    assert image_mb < 30 << 20  # an adaptation adds the image graph only (~15 MB)
    assert load_model(backend="onnx", heads=adapted.path).first_export_s is None
    texts = ["a river", "many planes at an airport"]
    np.testing.assert_array_equal(first.encode_texts(texts), second.encode_texts(texts))


def test_a_graph_evicted_before_first_use_is_built_again(tmp_path, monkeypatch):
    """Another process may evict a folder of a loaded model before it opens the graph (a
    search-only worker opens the image graph late): the model builds it again and runs."""
    from model_runtime.model import load_model
    from model_runtime.model.graphs import cache_entries, evict, graphs_root

    monkeypatch.setenv("CACH_GRAPH_CACHE", str(tmp_path / "graphs"))
    model = load_model(backend="onnx", bits=16)
    before = model.encode_texts(["a river"])
    removed = evict(graphs_root(), everything=True)
    assert len(removed) == 2 and cache_entries(graphs_root()) == []
    pixels = np.zeros((2, 224, 224, 3), np.uint8)
    assert model.encode_images(pixels).tanh.shape == (2, 16)
    assert [e.key["graph"] for e in cache_entries(graphs_root())] == ["image"]
    np.testing.assert_array_equal(model.encode_texts(["a river"]), before)  # opened before
