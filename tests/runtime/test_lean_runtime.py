"""The lean runtime (.venv: no torch, CUDA or triton) and what happens when an optional part is
missing: a coded message, never a traceback or an ``internal`` error, and an index that a model
which cannot load leaves as it was (never marked as being built)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_runtime.envcheck import HEAVY, LEAN_MAX_MB, heavy_packages, size_mb
from model_runtime.errors import missing_extra
from model_runtime.index.build import build_index
from model_runtime.index.store import Store
from model_runtime.paths import SAMPLES_DIR
from model_runtime.protocol import ErrorInfo

FLAVOUR = Path(sys.prefix) / ".cach-flavour"


def test_heavy_package_names_are_recognised():
    for name in ("torch", "triton", "nvidia-cublas-cu12", "nvidia_cudnn_cu12", "torchvision",
                 "open_clip_torch", "transformers"):
        assert HEAVY.match(name), name
    for name in ("onnxruntime", "onnx", "tokenizers", "faiss-cpu", "torchmetrics-lite", "numpy"):
        assert not HEAVY.match(name), name


@pytest.mark.skipif(not FLAVOUR.is_file(), reason="not an environment made by scripts/setup.sh")
def test_the_lean_runtime_holds_no_torch_nvidia_or_triton():
    """CI's check of the lean .venv (scripts/setup.sh also refuses to finish otherwise)."""
    if FLAVOUR.read_text().strip() != "lean":
        pytest.skip("the full extra (.venv-full) holds torch by design")
    assert heavy_packages() == []
    import importlib.util

    assert importlib.util.find_spec("torch") is None


def test_size_counts_blocks_on_disk(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 3_000_000)
    assert 2.9 < size_mb(tmp_path) < 3.2 and LEAN_MAX_MB == 700


def test_a_missing_optional_package_is_a_coded_answer_not_internal():
    err = ModuleNotFoundError("No module named 'torch'", name="torch")
    info = ErrorInfo.from_exception(err)
    assert (info.type, info.code) == ("config", "extra_missing")
    assert "PyTorch is not installed" in info.message and "--with-torch" in info.message
    assert missing_extra(ModuleNotFoundError("No module named 'x'", name="x")) is None
    assert ErrorInfo.from_exception(ValueError("boom")).code == "internal"  # others unchanged


@pytest.fixture
def no_torch(tmp_path):
    """PYTHONPATH that makes 'import torch' fail as in the lean runtime (also in .venv-full)."""
    stub = tmp_path / "stub" / "torch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    return str(stub.parent)


def test_the_cli_without_torch_says_what_to_do(no_torch, tmp_path):
    env = {"PYTHONPATH": no_torch, "CACH_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    rasters = tmp_path / "rasters"
    rasters.mkdir()
    shutil.copy2(sorted(SAMPLES_DIR.glob("*.tif"))[0], rasters)
    for args in (["train", "--bits", "16"], ["index", str(rasters), "--index",
                                             str(tmp_path / "idx"), "--backend", "torch"]):
        done = subprocess.run([sys.executable, "-m", "model_runtime", *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr
        assert "PyTorch is not installed" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "ModuleNotFoundError" not in done.stderr


class Unloadable:
    """A model whose identity is known but which cannot load (torch missing)."""

    def __init__(self, model):
        self.heads, self.info, self.bits = model.heads, model.info, model.bits

    def load(self):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    def __getattr__(self, name):
        self.load()


def test_a_model_that_cannot_load_leaves_the_index_as_it_was(encoder, sample_folder, tmp_path):
    idx = tmp_path / "idx"
    first = sample_folder / "rasterio"
    build_index(idx, [str(first)], encoder)
    store = Store(idx)
    before = store.meta()
    store.close()
    assert before["complete"] is True
    more = tmp_path / "more"
    shutil.copytree(sample_folder / "landsat", more)
    with pytest.raises(ModuleNotFoundError):
        build_index(idx, [str(more)], Unloadable(encoder))
    store = Store(idx)
    try:
        after = store.meta()
        assert after["complete"] is True and after["generation"] == before["generation"]
        assert store.roots() == [str(first)] or len(store.roots()) == 1  # the new folder is not in
    finally:
        store.close()


def test_the_worker_without_torch_answers_a_coded_error(no_torch, tmp_path):
    """The plugin's worker asked for the torch backend in a runtime without torch: a config
    error coded extra_missing (the plugin words it), never ``internal``; the worker lives on."""
    import json
    import os

    env = {**os.environ, "PYTHONPATH": no_torch, "CACH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "model_runtime.worker", "--no-preload",
                             "--backend", "torch", "--device", "cpu"], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        for request in ({"id": 1, "op": "load", "params": {}}, {"id": 2, "op": "status",
                                                                "params": {}}):
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        answers = {}
        while len(answers) < 2:
            msg = json.loads(proc.stdout.readline())
            if msg.get("id") in (1, 2) and "ok" in msg:
                answers[msg["id"]] = msg
        load = answers[1]
        assert not load["ok"] and load["error"]["code"] == "extra_missing", load
        assert load["error"]["type"] == "config" and "PyTorch" in load["error"]["message"]
        assert answers[2]["ok"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert "Traceback" not in proc.stderr.read()
