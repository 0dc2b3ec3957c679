"""The ONNX Runtime backend on tiny real-format graphs (tests/data/tiny_graphs: the product's
input and output names and dtypes, a few KB of made-up weights): the graph cache, sessions,
lanes, batching and output assembly of ``OnnxHashModel`` run for real, without the packaged
encoders. Only the graph build (which needs the weights) and the tokenizer are replaced."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from model_runtime.config import BackboneConfig, PreprocessCfg
from model_runtime.model import HeadsRef
from model_runtime.model import compiled as compiled_mod
from model_runtime.model.graphs import GRAPH_FORMAT, cached_graphs, engine_version
from model_runtime.model.onnx_model import OnnxHashModel

TINY = Path(__file__).resolve().parent.parent / "data" / "tiny_graphs"


def _generator():
    spec = importlib.util.spec_from_file_location("make_tiny_graphs", TINY / "make_tiny_graphs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
CONFIG = BackboneConfig(name="tiny", image_dim=12, text_dim=GEN.BITS, open_clip_arch="tiny",
                        preprocess=PreprocessCfg(size=GEN.SIZE))
HEADS = HeadsRef(Path("tiny.safetensors"), "0123abcd", "tiny", GEN.BITS, "tiny",
                 {"proj_dim": GEN.PROJ})


class WordTokenizer:
    """Words -> ids 1..VOCAB-1 (CRC32), padded with 0 to the longest text of the call."""

    def __init__(self, config: BackboneConfig) -> None:
        self.config = config

    def __call__(self, texts):
        rows = [[zlib.crc32(w.encode()) % (GEN.VOCAB - 1) + 1 for w in t.split()] or [1]
                for t in texts]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        return ids, (ids > 0).astype(np.int64)


class TinyOnnxModel(OnnxHashModel):
    """The product's ONNX Runtime model whose cache entries are built by copying the tiny
    graphs (the real build needs the packaged weights)."""

    builds = 0

    def _graph(self, name: str):
        source = TINY / f"{name}.onnx"
        parts = {"format": GRAPH_FORMAT, "graph": name, "backbone": "tiny",
                 "tiny_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                 "bits": GEN.BITS, "engine": engine_version(self.engine),
                 "precision": self.precision}

        def build(folder: Path) -> dict:
            TinyOnnxModel.builds += 1
            shutil.copy2(source, folder / f"{name}.onnx")
            return {"builder": "tiny"}

        return cached_graphs(parts, build)


@pytest.fixture
def tiny_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CACH_GRAPH_CACHE", str(tmp_path / "graphs"))
    monkeypatch.setenv("CACH_ENCODER_THREADS", "2")
    monkeypatch.setenv("CACH_ENCODER_LANES", "2")
    for var in ("CACH_PRECISION", "CACH_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(compiled_mod, "TextTokenizer", WordTokenizer)
    TinyOnnxModel.builds = 0
    return tmp_path / "graphs"


def test_the_tiny_graphs_are_what_their_generator_writes(tmp_path) -> None:
    GEN.main(tmp_path)
    for name in ("image.onnx", "text.onnx"):
        assert (tmp_path / name).read_bytes() == (TINY / name).read_bytes(), name
        assert (TINY / name).stat().st_size < 16_000


def test_onnx_backend_encodes_images_as_the_graph_computes(tiny_env) -> None:
    model = TinyOnnxModel(CONFIG, HEADS)
    assert (model.backend, model.precision, model.lanes) == ("onnx", "fp32", 2)
    pixels = np.random.default_rng(3).integers(0, 256, (20, GEN.SIZE, GEN.SIZE, 3), np.uint8)
    out = model.encode_images(pixels)  # 20 images: split over the two lanes
    tanh, proj = GEN.reference_image(pixels)
    assert out.tanh.dtype == np.float32 and out.tanh.shape == (20, GEN.BITS)
    assert out.proj is not None and out.proj.dtype == np.float16
    np.testing.assert_allclose(out.tanh, tanh, atol=1e-5)
    np.testing.assert_allclose(out.proj.astype(np.float32), proj, rtol=2e-3, atol=2e-3)
    one = model.submit_images(list(pixels[:3])).result()
    np.testing.assert_allclose(one.tanh, out.tanh[:3], atol=1e-6)
    empty = model.encode_images(np.zeros((0, GEN.SIZE, GEN.SIZE, 3), np.uint8))
    assert empty.tanh.shape == (0, GEN.BITS) and empty.proj.shape == (0, GEN.PROJ)
    model.close()


def test_onnx_backend_resizes_other_tile_sizes_first(tiny_env) -> None:
    model = TinyOnnxModel(CONFIG, HEADS)
    tiles = [np.full((64, 48, 3), v, np.uint8) for v in (0, 128, 255)]
    out = model.encode_images(tiles)
    np.testing.assert_allclose(out.tanh, GEN.reference_image(model.prepare(tiles))[0], atol=1e-5)
    assert len({row.tobytes() for row in out.tanh}) == 3
    model.close()


def test_onnx_backend_encodes_texts_in_the_order_given(tiny_env) -> None:
    model = TinyOnnxModel(CONFIG, HEADS)
    texts = ["a long text about a forest on a mountain", "harbour", "two words", "harbour"]
    out = model.encode_texts(texts)  # sorted by length inside, returned in the given order
    assert out.shape == (4, GEN.BITS) and out.dtype == np.float32
    for text, row in zip(texts, out, strict=True):
        ids, mask = WordTokenizer(CONFIG)([text])
        np.testing.assert_allclose(row, GEN.reference_text(ids, mask)[0], atol=1e-5)
    np.testing.assert_array_equal(out[1], out[3])
    assert model.encode_texts([]).shape == (0, GEN.BITS)
    model.close()


def test_graph_cache_is_built_once_and_found_by_the_next_model(tiny_env) -> None:
    first = TinyOnnxModel(CONFIG, HEADS)
    assert TinyOnnxModel.builds == 2 and first.first_export_s is not None
    first.warm_up()
    second = TinyOnnxModel(CONFIG, HEADS)
    assert TinyOnnxModel.builds == 2 and second.first_export_s is None
    assert {g.folder for g in first.graphs.values()} == {g.folder for g in second.graphs.values()}
    assert all(g.folder.parent == tiny_env for g in second.graphs.values())
    shutil.rmtree(second.graphs["text"].folder)  # evicted by another process: rebuilt on use
    assert second.encode_texts(["forest"]).shape == (1, GEN.BITS)
    assert TinyOnnxModel.builds == 3
    first.close()
    second.close()
