"""model_runtime never imports Qt or qgis; `cach --help` stays light (no torch); the inference
package (model_runtime/model/) imports nothing of training, datasets or research."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
        "model_runtime.index, model_runtime.raster.tiling, model_runtime.encoders, "
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


#: packages the inference package must not import, lazily inside functions included
NOT_FROM_MODEL = ("model_runtime.hashing", "model_runtime.data", "model_runtime.research")
#: (module, imported name) pairs still allowed, each with its reason: none (int8 calibration
#: reads a shipped list of images, resources/calibration/, not the dataset loader)
MODEL_EXCEPTIONS: set[tuple[str, str]] = set()


def imported_names(path: Path) -> set[str]:
    """Every module a file imports, at any depth (relative imports resolved inside
    ``model_runtime.model``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = ["model_runtime", "model"][: 3 - node.level]
                base = ".".join([*parent, base] if base else parent)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def _excepted(filename: str, name: str) -> bool:
    return any(filename == fn and (name == ok or name.startswith(f"{ok}."))
               for fn, ok in MODEL_EXCEPTIONS)


def test_imported_names_sees_lazy_and_relative_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from model_runtime.hashing.heads_io import load_heads\n"
                   "    from ..data import datasets\n    import model_runtime.research.x\n")
    found = imported_names(src)
    assert {"model_runtime.hashing.heads_io", "model_runtime.data.datasets",
            "model_runtime.research.x"} <= found


def test_inference_package_imports_no_training_data_or_research():
    folder = PLUGIN_ROOT / "model_runtime" / "model"
    files = sorted(folder.glob("*.py"))
    assert len(files) > 10  # the package really is there
    bad = sorted(f"{f.name} imports {name}" for f in files for name in imported_names(f)
                 if name.startswith(NOT_FROM_MODEL) and not _excepted(f.name, name))
    assert not bad, "model/ must not import hashing/, data/ or research/: " + "; ".join(bad)


def test_the_shipped_calibration_list_is_the_one_the_dataset_gives():
    """int8 calibration reads ``resources/calibration/`` (model/ never imports data/); the list
    must stay the UCM training images ``python -m model_runtime.data.calibration`` picks."""
    from model_runtime.data.calibration import calibration_files
    from model_runtime.model.quantize import calibration_files as shipped
    from model_runtime.paths import data_root

    want = calibration_files()
    got = [p.relative_to(data_root()).as_posix() for p in shipped()]
    assert got == want and len(got) == 128
    assert all("/images/" in f and f.startswith("ucm/") for f in got)
