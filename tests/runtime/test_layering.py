"""model_runtime never imports Qt or qgis; `cach --help` stays light (no torch)."""

from __future__ import annotations

import subprocess
import sys

from model_runtime.paths import PLUGIN_ROOT


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True, text=True, timeout=300, check=True, cwd=PLUGIN_ROOT,
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_runtime_never_imports_qt_or_qgis():
    loaded = _modules_after(
        "import model_runtime.pipeline, model_runtime.worker, model_runtime.cli, "
        "model_runtime.index, model_runtime.tiling, model_runtime.encoders, "
        "model_runtime.hashing.train, model_runtime.captions\n"
        "from model_runtime.encoders import load_encoder; load_encoder(device='cpu')"
    )
    assert "torch" in loaded  # the imports above really ran
    assert not loaded & {"qgis", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip"}


def test_cli_help_does_not_load_torch():
    loaded = _modules_after(
        "import contextlib, io\nfrom model_runtime.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main([])"
    )
    assert "model_runtime" in loaded and "torch" not in loaded and "faiss" not in loaded
