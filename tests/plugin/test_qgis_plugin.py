"""Plugin life cycle, runtime failures and Processing registration in real QGIS (no model needed)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, wait_until
from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtWidgets import QDockWidget

FAKE_WORKER = str(Path(__file__).with_name("fake_worker.py"))
HEAVY = ("torch", "open_clip", "faiss", "model_runtime", "rasterio", "timm", "transformers")


def load_plugin_package(name: str = "cach_for_qgis"):
    """Import the repository root as the plugin package QGIS would see."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_cach_qgis_never_imports_the_model_runtime():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import cach_qgis.plugin, cach_qgis.processing.algorithms, cach_qgis.processing.provider\n"
        f"heavy = {HEAVY!r}\n"
        "print(','.join(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "", f"cach_qgis imported runtime modules: {out.stdout}"


def test_class_factory_loads_and_unloads(
    qgis_iface, message_bar, no_exception_dialogs, runtime_python
):
    from qgis.core import QgsSettings

    QgsSettings().setValue("cach/runtime_python", runtime_python)
    package = load_plugin_package()
    plugin = package.classFactory(qgis_iface)
    plugin.initGui()
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("cach") is not None
    assert {a.name() for a in registry.providerById("cach").algorithms()} == {
        "indexrasterfolder",
        "textsearch",
    }
    assert isinstance(plugin.dock, QDockWidget)
    assert plugin.tool is not None and plugin.actions
    assert plugin.client.state == "stopped", "the worker must only start when first needed"

    plugin.search_action.trigger()
    assert not plugin.dock.isHidden()
    plugin.tile_action.trigger()
    assert qgis_iface.mapCanvas().mapTool() is plugin.tool

    # the worker starts in the background on first need and reports its device
    status = plugin.client.call("status", {}, timeout_s=120)
    assert status["protocol"] == 1
    pid = plugin.client.pid()
    assert pid and plugin.client.device

    plugin.unload()
    with pytest.raises(ProcessLookupError):  # the worker was shut down with the plugin
        os.kill(pid, 0)
    assert registry.providerById("cach") is None
    assert plugin.dock is None and plugin.tool is None and not plugin.actions
    assert qgis_iface.mapCanvas().mapTool() is None
    assert not message_bar.get_messages(Qgis.Critical)


def _dock(qgis_iface, client):
    from cach_qgis.dock import SearchDock

    dock = SearchDock(qgis_iface, client)
    dock.index_combo.setCurrentText("/tmp/no-index-needed")
    return dock


def test_missing_runtime_shows_message_bar_error(qgis_iface, message_bar, no_exception_dialogs):
    from cach_qgis.runtime_client import RuntimeClient

    client = RuntimeClient(python="/nonexistent/cach-runtime/bin/python")
    dock = _dock(qgis_iface, client)
    dock.query_edit.setText("a baseball field next to a parking lot")
    req = dock.search()
    wait_until(lambda: req.done, 30, "the failed request")
    assert req.error is not None and req.error.type == "runtime"
    errors = message_bar.get_messages(Qgis.Critical)
    assert any("Cannot run the CACH runtime" in m for m in errors), errors
    assert dock.search_button.isEnabled()
    client.shutdown()


def test_broken_runtime_shows_message_bar_error(qgis_iface, message_bar, no_exception_dialogs):
    from cach_qgis.runtime_client import RuntimeClient

    # an interpreter that exists but cannot run the worker (as with a half-installed venv)
    broken = [
        "-c",
        "import sys; sys.stderr.write(\"ModuleNotFoundError: No module named 'torch'\\n\"); "
        "sys.exit(1)",
    ]
    client = RuntimeClient(python=sys.executable, args=broken)
    dock = _dock(qgis_iface, client)
    dock.query_edit.setText("farmland")
    req = dock.search()
    wait_until(lambda: req.done, 30, "the failed request")
    errors = message_bar.get_messages(Qgis.Critical)
    assert any("could not start" in m and "torch" in m for m in errors), errors
    assert client.state == "stopped"


def test_crashed_worker_is_restarted_and_user_told(qgis_iface, message_bar, no_exception_dialogs):
    from cach_qgis.runtime_client import RuntimeClient

    client = RuntimeClient(python=sys.executable, args=[FAKE_WORKER])
    notices: list[str] = []
    client.notice.connect(lambda text, level: notices.append(text))
    assert client.call("status", {}, timeout_s=30)["device"] == "cpu"
    first_pid = client.pid()

    dock = _dock(qgis_iface, client)
    dock.query_edit.setText("crash")
    req = dock.search()
    wait_until(lambda: req.done, 30, "the crashed request")
    assert req.error is not None and req.error.type == "runtime"
    assert "stopped unexpectedly" in str(req.error)
    assert any("restarted" in n for n in notices), notices
    wait_until(lambda: client.state == "ready", 30, "the restart")
    assert client.pid() != first_pid
    assert client.call("search", {"index": "x", "text": "fine"}, timeout_s=30)["results"] == []
    client.shutdown()
    assert client.state == "stopped" and not client.is_running()


def test_runtime_settings_detect_plugin_venv(qgis_app):
    from cach_qgis import settings

    candidates = settings.runtime_python_candidates()
    assert settings.venv_python(ROOT / ".venv") in candidates
    assert settings.default_runtime_dir() != ROOT  # never inside QGIS's own site-packages


def test_runtime_installer_creates_venv_with_log(qgis_app, tmp_path):
    """The installer's steps, progress and log, with an empty requirements file (offline)."""
    from cach_qgis.runtime_setup import RuntimeInstaller

    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# nothing to install in this test\n")
    installer = RuntimeInstaller(
        target=tmp_path / "venv", requirements=reqs, base_python="/usr/bin/python3"
    )
    progress, done = [], []
    installer.progress.connect(lambda pct, msg: progress.append(pct))
    installer.finished.connect(lambda ok, msg: done.append((ok, msg)))
    installer.start()
    wait_until(lambda: done, 180, "the installer")
    assert done[0][0], done
    assert Path(done[0][1]).exists()
    assert progress[-1] == 100 and progress == sorted(progress)
    log = (tmp_path / "venv" / "cach-install.log").read_text()
    assert "-m venv" in log and "pip install" in log
    # QGIS's interpreter is untouched: the venv does not see system site-packages
    cfg = (tmp_path / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
