"""Suite-wide policy: with CI=true nothing is skipped silently.

Locally a test may skip when a dataset or the runtime is missing; in CI every skip is turned into
a failure that says why, because CI must run everything (data, runtime and QGIS are installed
there by the README's test command). ``CACH_ALLOW_SKIPS=1`` lifts this for a deliberate job.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
STRICT = CI and os.environ.get("CACH_ALLOW_SKIPS") != "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {reason}"


# --- the two environments -------------------------------------------------------------------
# The lean runtime (.venv: ONNX Runtime, no torch) runs every test except those that need the
# full extra (.venv-full: PyTorch, open_clip, OpenVINO, matplotlib). Those carry the marker
# ``torch``: `make test` runs `-m "not torch"` in .venv and `-m torch` in .venv-full, so every
# test runs once. Modules that import torch at the top are listed whole (they are not even
# collected without torch); single tests by node id prefix. A `-m torch` run collects only the
# modules named here (the others, e.g. the Ray and S3 suites whose extras only .venv has, hold
# nothing for it), so list a test here to run it in .venv-full.
FULL_ONLY = (
    "tests/research/",
    "tests/runtime/test_adapt.py",
    "tests/runtime/test_adapt_index.py",
    "tests/runtime/test_encoders.py",
    "tests/runtime/test_heads_io.py",
    "tests/runtime/test_lean_full_codes.py",
    "tests/runtime/test_losses.py",
    "tests/runtime/test_train.py",
    "tests/runtime/test_train_ucm.py",
    "tests/runtime/test_shipped_heads.py",
    "tests/runtime/test_engines.py::test_codes_agree_with_torch_through_the_graph",
    "tests/runtime/test_engines.py::test_lanes_give_the_same_outputs_as_one_call[openvino]",
    "tests/runtime/test_engines.py::test_compiled_search_path_never_imports_torch[openvino]",
    "tests/runtime/test_engines.py::test_tokenizer_gives_the_ids_of_the_torch_path",
    "tests/runtime/test_engines.py::test_backend_selection_defaults_and_errors",
    "tests/runtime/test_engines.py::test_heads_with_a_projection_export_it_as_a_second_output",
    "tests/runtime/test_graph_cache.py::test_openvino_conversion_loads_no_telemetry",
    "tests/runtime/test_onnx_build.py::test_pth_files_read_as_torch_reads_them",
    "tests/runtime/test_onnx_build.py::test_the_shipped_pth_reads_as_torch_reads_it",
    "tests/runtime/test_onnx_build.py::test_image_graph_matches_the_torch_export",
    "tests/runtime/test_onnx_build.py::test_text_graph_matches_the_torch_export",
    "tests/runtime/test_onnx_build.py::test_the_features_reproduce_the_graph_outputs",
    "tests/runtime/test_onnx_build.py::test_cach_eval_cells_agree",
    "tests/runtime/test_onnx_build.py::test_heads_without_a_projection_give_one_output_as_torch_does",
    "tests/runtime/test_numpy_heads.py::test_numpy_heads_compute_what_the_torch_heads_compute",
    "tests/runtime/test_layering.py::test_runtime_never_imports_qt_or_qgis",
    "tests/runtime/test_features.py::test_extract_then_reuse_cache_and_invalidate_on_change",
    "tests/runtime/test_features.py::test_corrupt_image_is_named",
)
HAS_TORCH = importlib.util.find_spec("torch") is not None
_ROOT = Path(__file__).resolve().parent.parent


def _rel(path: Path | str) -> str:
    try:
        return Path(path).resolve().relative_to(_ROOT).as_posix()
    except ValueError:
        return str(path)


def needs_full_env(nodeid: str) -> bool:
    """True for a test (node id relative to the repository) that only the full extra runs."""
    return any(nodeid.startswith(prefix) for prefix in FULL_ONLY)


_NOT_COLLECTED: list[str] = []


def _full_only_run(config) -> bool:  # noqa: ANN001
    return (config.option.markexpr or "").strip() == "torch"


def pytest_ignore_collect(collection_path, config):  # noqa: ANN001
    """Without torch, modules listed whole are not imported (their import would fail); a
    ``-m torch`` run imports only the modules listed."""
    rel = _rel(collection_path) + ("/" if Path(collection_path).is_dir() else "")
    if _full_only_run(config) and rel.endswith(".py") and Path(rel).name.startswith("test_"):
        if not any(rel.startswith(p) or p.startswith(rel + "::") for p in FULL_ONLY):
            return True
    if HAS_TORCH:
        return None
    if any(rel == p or rel.startswith(p) for p in FULL_ONLY if p.endswith(("/", ".py"))):
        asked = [Path(a.split("::")[0]).resolve() for a in config.args]
        here = Path(collection_path).resolve()
        if any(here == a or a in here.parents for a in asked) and rel not in _NOT_COLLECTED:
            _NOT_COLLECTED.append(rel)  # asked for (not a sibling pytest merely looked at)
        return True
    return None


def pytest_collection_modifyitems(config, items):  # noqa: ANN001
    for item in items:
        if needs_full_env(item.nodeid):
            item.add_marker(pytest.mark.torch)
    if STRICT and _NOT_COLLECTED and "not torch" not in (config.option.markexpr or ""):
        raise pytest.UsageError(
            f"CI=true without torch, and {', '.join(_NOT_COLLECTED)} need it: run the lean "
            "environment with -m 'not torch' and the tests marked torch in .venv-full (make test "
            "does both), so that nothing is skipped.")


def pytest_configure(config):  # noqa: ANN001
    config.addinivalue_line("markers", "torch: needs the full extra (.venv-full)")
