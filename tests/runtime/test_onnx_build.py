"""The torch-free graph builder: weight files read without torch (and without running code from
them), and graphs that compute what the torch export computes. The full sets (210 UCM test
images, every sample tile, 256 captions, ``cach eval`` per builder) run in
bench/bench_graph_builder.py; here a subset keeps the suite fast."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from model_runtime.config import get_backbone_config
from model_runtime.errors import ConfigError, DataError
from model_runtime.model.heads import shipped_heads
from model_runtime.model.weights_np import load_torch_file
from model_runtime.paths import PLUGIN_ROOT, SAMPLES_DIR

BACKBONE = "effnetlite0-minilm"
#: outputs of the two builders may differ by at most this
TOLERANCE = 1e-4


# --- reading .pth files without torch -------------------------------------------------------------
@pytest.mark.parametrize("zip_format", [True, False])
def test_pth_files_read_as_torch_reads_them(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    state = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "transposed": torch.arange(12.0).view(3, 4).t(),  # a non-contiguous view
        "half": torch.randn(5).half(),
        "counter": torch.tensor(7),
        "ints": torch.arange(6, dtype=torch.int64).view(2, 3)[:, 1:],
    }
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    got = load_torch_file(path)
    assert list(got) == list(state)
    for key, tensor in state.items():
        assert got[key].dtype == tensor.numpy().dtype and got[key].shape == tuple(tensor.shape)
        np.testing.assert_array_equal(got[key], tensor.numpy())


def test_the_shipped_pth_reads_as_torch_reads_it():
    torch = pytest.importorskip("torch")
    from model_runtime.config import resolve_path

    path = resolve_path(get_backbone_config(BACKBONE).image_weights.path)
    got, ref = load_torch_file(path), torch.load(path, map_location="cpu", weights_only=True)
    assert list(got) == list(ref) and len(got) == 296
    for key, tensor in ref.items():
        np.testing.assert_array_equal(got[key], tensor.numpy())


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_RAN",))


def test_a_weight_file_cannot_run_code(tmp_path, monkeypatch):
    """Only the globals of plain tensors resolve: anything else is refused, never called."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        load_torch_file(path)
    assert not (tmp_path / "EVIL_RAN").exists()
    (tmp_path / "junk.pth").write_bytes(b"not a weight file at all")
    with pytest.raises(DataError):
        load_torch_file(tmp_path / "junk.pth")


# --- which backbones, which builder ----------------------------------------------------------------
def test_a_backbone_it_cannot_build_is_a_coded_error(tmp_path, monkeypatch):
    from model_runtime.model.compiled import graph_builder
    from model_runtime.model.onnx_build import build_onnx, supports

    remote = get_backbone_config("remoteclip-vit-b-32")
    default = get_backbone_config(BACKBONE)
    assert supports(default) and not supports(remote)
    with pytest.raises(ConfigError) as err:
        build_onnx(remote, shipped_heads(BACKBONE, 64), tmp_path)
    assert err.value.code == "backend_unavailable" and "torch" in str(err.value)
    monkeypatch.delenv("CACH_GRAPH_BUILDER", raising=False)
    assert graph_builder(default) == "numpy" and graph_builder(remote) == "torch"
    monkeypatch.setenv("CACH_GRAPH_BUILDER", "torch")
    assert graph_builder(default) == "torch"
    monkeypatch.setenv("CACH_GRAPH_BUILDER", "numpy")
    with pytest.raises(ConfigError, match="cannot build"):
        graph_builder(remote)
    monkeypatch.setenv("CACH_GRAPH_BUILDER", "tensorflow")
    with pytest.raises(ConfigError, match="CACH_GRAPH_BUILDER"):
        graph_builder(default)


def test_the_torch_export_without_torch_is_a_coded_error(tmp_path, monkeypatch):
    from model_runtime.model.export import export_onnx

    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" raises ImportError
    with pytest.raises(ConfigError) as err:
        export_onnx(get_backbone_config(BACKBONE), shipped_heads(BACKBONE, 64), tmp_path, None)
    assert err.value.code == "backend_unavailable"


WITHOUT_TORCH = """
import sys
for name in ("torch", "torchvision", "timm", "open_clip", "transformers", "sentence_transformers"):
    sys.modules[name] = None  # any import of them raises
from pathlib import Path
import numpy as np, onnxruntime as ort
from model_runtime.config import get_backbone_config
from model_runtime.model.export import PROBE_TEXTS, probe_pixels
from model_runtime.model.heads import shipped_heads
from model_runtime.model.onnx_build import build_onnx
from model_runtime.model.tokenizer import TextTokenizer
cfg = get_backbone_config("effnetlite0-minilm")
folder = Path(sys.argv[1])
build_onnx(cfg, shipped_heads(cfg.name, 32), folder)
image = ort.InferenceSession(str(folder / "image.onnx"), providers=["CPUExecutionProvider"])
text = ort.InferenceSession(str(folder / "text.onnx"), providers=["CPUExecutionProvider"])
tanh, proj = image.run(None, {"pixels": probe_pixels(224)})
ids, mask = TextTokenizer(cfg)(list(PROBE_TEXTS))
(ttanh,) = text.run(None, {"input_ids": ids, "attention_mask": mask})
print(tanh.shape, proj.shape, ttanh.shape, bool(np.isfinite(tanh).all() and np.isfinite(ttanh).all()))
"""


def test_the_graphs_build_and_run_with_torch_unimportable(tmp_path):
    out = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(tmp_path)], capture_output=True,
                         text=True, timeout=300, cwd=PLUGIN_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "(4, 32) (4, 256) (3, 32) True"


# --- the same function as the torch export --------------------------------------------------------
def compare(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, int]:
    """Max absolute difference, and the count of sign flips where torch's output is not within
    :data:`TOLERANCE` of zero (those must be none)."""
    flips = ((ours > 0) != (theirs > 0)) & (np.abs(theirs) > TOLERANCE)
    return float(np.abs(ours - theirs).max()), int(flips.sum())


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    pytest.importorskip("torch")
    import onnxruntime as ort

    from model_runtime.model.export import export_onnx
    from model_runtime.model.onnx_build import build_onnx
    from model_runtime.model.tokenizer import TextTokenizer

    cfg = get_backbone_config(BACKBONE)
    heads = shipped_heads(BACKBONE, 64)
    ours, theirs = tmp_path_factory.mktemp("numpy"), tmp_path_factory.mktemp("torch")
    build_onnx(cfg, heads, ours)
    tokenizer = TextTokenizer(cfg)
    export_onnx(cfg, heads, theirs, tokenizer)

    def session(folder, name):
        return ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])

    return {"tokenizer": tokenizer, **{f"{b}_{n}": session(f, n) for b, f in
                                       (("ours", ours), ("theirs", theirs))
                                       for n in ("image", "text")}}


def _ucm_subset(step: int = 5):
    from model_runtime.data.datasets import load_ucm
    from model_runtime.model.dataset_outputs import load_pixels

    try:
        items = [it for it in load_ucm().items if it.split("official") == "test"]
    except Exception as err:  # noqa: BLE001 - any reason the data is missing
        pytest.skip(f"UCM not found: {err}")
    return load_pixels([it.image for it in items[::step]], 224), items


def test_image_graph_matches_the_torch_export(graphs):
    from model_runtime.tiling import TilingOptions, iter_tiles

    ucm, _ = _ucm_subset()
    tiles = np.stack([rgb for path in sorted(SAMPLES_DIR.glob("*.tif"))
                      for rgb, _ in iter_tiles(path, TilingOptions(output_size=224))])
    assert len(ucm) == 42 and len(tiles) >= 30
    for pixels in (ucm, tiles):
        ours = graphs["ours_image"].run(None, {"pixels": pixels})
        theirs = graphs["theirs_image"].run(None, {"pixels": pixels})
        assert [o.shape for o in ours] == [(len(pixels), 64), (len(pixels), 256)]
        for a, b in zip(ours, theirs, strict=True):
            diff, flips = compare(a, b)
            assert diff < TOLERANCE and flips == 0


def test_text_graph_matches_the_torch_export(graphs):
    _, items = _ucm_subset()
    captions = sorted({c for it in items for c in it.captions})[::6]
    captions += ["", "a " * 300]  # empty, and longer than the context (truncated)
    ids, mask = graphs["tokenizer"](captions)
    ours = graphs["ours_text"].run(None, {"input_ids": ids, "attention_mask": mask})[0]
    theirs = graphs["theirs_text"].run(None, {"input_ids": ids, "attention_mask": mask})[0]
    assert ours.shape == (len(captions), 64) and len(captions) >= 60
    diff, flips = compare(ours, theirs)
    assert diff < TOLERANCE and flips == 0



def test_heads_without_a_projection_give_one_output_as_torch_does(tmp_path, graphs):
    """Heads of the first release (``proj_dim`` 0): the image head reads the normalised
    features and the graph has the single ``tanh`` output, as the torch export."""
    import onnxruntime as ort

    from model_runtime.model.export import export_onnx, probe_pixels
    from model_runtime.model.heads import read_heads
    from model_runtime.model.onnx_build import build_onnx
    from model_runtime.paths import HEADS_DIR

    heads = read_heads(HEADS_DIR / "archive" / "round1" / "cach-effnetlite0-minilm-16.safetensors")
    assert heads.proj_dim == 0
    cfg = get_backbone_config(BACKBONE)
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    build_onnx(cfg, heads, tmp_path / "ours", names=("image",))
    export_onnx(cfg, heads, tmp_path / "theirs", graphs["tokenizer"], names=("image",))
    assert not (tmp_path / "ours" / "text.onnx").exists()
    pixels = probe_pixels(224)
    outs = [ort.InferenceSession(str(tmp_path / b / "image.onnx"),
                                 providers=["CPUExecutionProvider"]).run(None, {"pixels": pixels})
            for b in ("ours", "theirs")]
    assert [o.shape for o in outs[0]] == [(len(pixels), 16)] == [o.shape for o in outs[1]]
    diff, flips = compare(outs[0][0], outs[1][0])
    assert diff < TOLERANCE and flips == 0
