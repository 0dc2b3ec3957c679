"""Plugin life cycle, runtime start and failures, layering and Processing registration in real QGIS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PLUGINS_FOLDER, fake_client, link_folder, wait_until
from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtWidgets import QDockWidget

#: what the plugin may load of the runtime package: the protocol and the errors it imports
ALLOWED_RUNTIME = {
    "cach_for_qgis.model_runtime",
    "cach_for_qgis.model_runtime.protocol",
    "cach_for_qgis.model_runtime.errors",
} | {
    f"cach_for_qgis.model_runtime.protocol.{name}"
    for name in (
        "defaults", "codes", "kinds", "codec", "requests", "envelope", "results", "footprints"
    )
}
HEAVY = (
    "torch",
    "open_clip",
    "faiss",
    "rasterio",
    "timm",
    "transformers",
    "onnxruntime",
    "openvino",
    "safetensors",
    "model_runtime",
)
PLUGIN_MODULES = (
    "cach_for_qgis",
    "cach_for_qgis.cach_qgis.plugin",
    "cach_for_qgis.cach_qgis.processing.algorithms",
    "cach_for_qgis.cach_qgis.processing.provider",
    "cach_for_qgis.cach_qgis.wording",
    "cach_for_qgis.cach_qgis.viewer",
)


def _imported_after(modules: tuple[str, ...]) -> dict[str, list[str]]:
    """Import ``modules`` in a fresh QGIS Python; report runtime and heavy modules loaded."""
    code = (
        f"import sys, json, importlib; sys.path.insert(0, {str(PLUGINS_FOLDER)!r})\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"heavy = {HEAVY!r}\n"
        "runtime = sorted(m for m in sys.modules if '.model_runtime' in m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(json.dumps({'runtime': runtime, 'heavy': bad}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd="/",
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cach_qgis_imports_only_the_protocol_from_the_runtime():
    found = _imported_after(PLUGIN_MODULES)
    assert found["heavy"] == [], f"the plugin imported heavy modules: {found['heavy']}"
    assert set(found["runtime"]) == ALLOWED_RUNTIME, found["runtime"]


def test_plugin_and_runtime_share_one_protocol_module():
    from cach_for_qgis.cach_qgis import runtime_client, wording
    from cach_for_qgis.model_runtime import protocol

    assert runtime_client.protocol is protocol
    assert wording.Hit is protocol.Hit
    assert not hasattr(runtime_client, "Hit"), "no mirrored protocol types on the plugin side"
    assert not (PLUGINS_FOLDER / "cach_for_qgis" / "cach_qgis" / "messages.py").exists()


def test_class_factory_starts_worker_with_the_panel_and_unloads(
    qgis_iface, message_bar, no_exception_dialogs, runtime_python, own_shared_client
):
    from cach_for_qgis.model_runtime import protocol
    from qgis.core import QgsSettings

    QgsSettings().setValue("cach/runtime_python", runtime_python)
    import cach_for_qgis

    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("cach") is not None
    assert {a.name() for a in registry.providerById("cach").algorithms()} == {
        "indexrasterfolder",
        "textsearch",
        "runsavedsearch",
    }
    assert isinstance(plugin.dock, QDockWidget)
    assert plugin.tool is not None and plugin.actions
    assert plugin.client.state == "stopped", "nothing starts before the panel is shown"

    plugin.search_action.trigger()  # the panel is shown: the worker starts now, not at search
    assert not plugin.dock.isHidden()
    assert plugin.client.state in ("starting", "ready")
    wait_until(lambda: plugin.client.state == "ready", 120, "the worker's ready line")
    plugin.tile_action.trigger()
    assert qgis_iface.mapCanvas().mapTool() is plugin.tool

    status = plugin.client.call("status", {}, timeout_s=120)
    assert status["protocol"] == protocol.PROTOCOL_VERSION
    pid = plugin.client.pid()
    # the device is the loaded model's (cpu or cuda), never the "auto" preference
    wait_until(lambda: bool(plugin.client.device), 120, "the loaded model's device")
    assert pid and plugin.client.device in ("cpu", "cuda") or "cuda" in plugin.client.device

    plugin.unload()
    with pytest.raises(ProcessLookupError):  # the worker was shut down with the plugin
        os.kill(pid, 0)
    assert registry.providerById("cach") is None
    assert plugin.dock is None and plugin.tool is None and not plugin.actions
    assert qgis_iface.mapCanvas().mapTool() is None
    assert not message_bar.get_messages(Qgis.Critical)


def test_worker_starts_when_the_panel_is_first_shown(qgis_iface, no_exception_dialogs):
    from cach_for_qgis.cach_qgis.dock import SearchDock

    client = fake_client()
    dock = SearchDock(qgis_iface, client)
    assert client.state == "stopped"
    dock.show()
    assert client.state == "starting", "showing the panel must start the worker"
    wait_until(lambda: client.state == "ready", 30, "ready")
    assert "ready" in dock.runtime_box.label.text().lower()
    dock.hide()
    dock.show()  # showing it again does not start a second worker
    pid = client.pid()
    assert client.state == "ready" and client.pid() == pid
    client.shutdown()
    dock.deleteLater()


def _dock(qgis_iface, client):
    from cach_for_qgis.cach_qgis.dock import SearchDock

    dock = SearchDock(qgis_iface, client)
    dock.bar.index_combo.setCurrentText("/tmp/no-index-needed")
    return dock


def test_missing_runtime_shows_message_bar_error(qgis_iface, message_bar, no_exception_dialogs):
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient

    client = RuntimeClient(python="/nonexistent/cach-runtime/bin/python")
    dock = _dock(qgis_iface, client)
    dock.bar.query_edit.setText("a baseball field next to a parking lot")
    req = dock.search()
    wait_until(lambda: req.done, 30, "the failed request")
    assert req.error is not None and req.error.code == "worker_unavailable"
    errors = message_bar.get_messages(Qgis.Critical)
    assert any("Cannot run the CACH runtime" in m and "Runtime settings" in m for m in errors)
    assert dock.bar.search_button.isEnabled()
    assert "Cannot run the CACH runtime" in dock.runtime_box.problem_label.text()
    assert dock.runtime_box.problem.isVisibleTo(dock)
    client.shutdown()


def test_broken_runtime_shows_message_bar_error(qgis_iface, message_bar, no_exception_dialogs):
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient

    # an interpreter that exists but cannot run the worker (as with a half-installed venv)
    broken = [
        "-c",
        "import sys; sys.stderr.write(\"ModuleNotFoundError: No module named 'torch'\\n\"); "
        "sys.exit(1)",
    ]
    client = RuntimeClient(python=sys.executable, args=broken)
    dock = _dock(qgis_iface, client)
    dock.bar.query_edit.setText("farmland")
    req = dock.search()
    wait_until(lambda: req.done, 30, "the failed request")
    errors = message_bar.get_messages(Qgis.Critical)
    assert any("could not start" in m and "torch" in m for m in errors), errors
    assert client.state == "stopped"


def test_crashed_worker_is_restarted_and_user_told(qgis_iface, message_bar, no_exception_dialogs):
    client = fake_client()
    notices: list[str] = []
    client.notice.connect(lambda text, level: notices.append(text))
    assert client.call("status", {}, timeout_s=30)["device"] == "cpu"
    first_pid = client.pid()

    dock = _dock(qgis_iface, client)
    dock.bar.query_edit.setText("crash")
    req = dock.search()
    wait_until(lambda: req.done, 30, "the crashed request")
    assert req.error is not None and req.error.code == "worker_unavailable"
    assert "stopped unexpectedly" in str(req.error)
    assert any("restarted" in n for n in notices), notices
    wait_until(lambda: client.state == "ready", 30, "the restart")
    assert client.pid() != first_pid
    assert client.call("search", {"index": "x", "text": "fine"}, timeout_s=30)["results"] == []
    client.shutdown()
    assert client.state == "stopped" and not client.is_running()


def _unload_after_index_task(plugin, folder: Path, index: Path, message_bar) -> None:
    """Index ``folder`` through the plugin, let the task manager delete the finished task,
    then unload: no exception, the worker gone."""
    from cach_for_qgis.model_runtime.protocol import IndexRequest
    from qgis.PyQt import sip

    plugin.initGui()
    plugin.search_action.trigger()
    task = plugin.jobs.start_index(IndexRequest(str(index), paths=(str(folder),)))
    ended = []
    task.ended.connect(lambda: ended.append(True))
    wait_until(lambda: ended, 900, "the indexing task")
    assert task.summary is not None and task.summary.tiles > 0, task.error
    wait_until(lambda: sip.isdeleted(task), 30, "the task manager to delete the finished task")
    assert plugin.jobs.tasks == []
    pid = plugin.client.pid()
    assert pid
    plugin.unload()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert plugin.client is None and plugin.dock is None
    assert not message_bar.get_messages(Qgis.Critical)


def test_unload_after_a_completed_index_task_real_worker(
    qgis_iface,
    message_bar,
    no_exception_dialogs,
    runtime_python,
    rasters,
    tmp_path,
    own_shared_client,
):
    import cach_for_qgis
    from qgis.core import QgsSettings

    QgsSettings().setValue("cach/runtime_python", runtime_python)
    plugin = cach_for_qgis.classFactory(qgis_iface)
    folder = link_folder(rasters[:1], tmp_path / "rasters")
    _unload_after_index_task(plugin, folder, tmp_path / "index", message_bar)


def test_unload_after_a_completed_index_task_fake_worker(
    qgis_iface, message_bar, no_exception_dialogs, monkeypatch, own_shared_client, tmp_path
):
    """The same, deterministic: the plugin code under test is the same with either worker."""
    import cach_for_qgis

    monkeypatch.setattr(own_shared_client, "_SHARED", fake_client())
    plugin = cach_for_qgis.classFactory(qgis_iface)
    folder = tmp_path / "rasters"
    folder.mkdir()
    _unload_after_index_task(plugin, folder, tmp_path / "index", message_bar)


def test_unload_survives_a_failing_step(
    qgis_iface, no_exception_dialogs, monkeypatch, own_shared_client
):
    import cach_for_qgis

    monkeypatch.setattr(own_shared_client, "_SHARED", fake_client())
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    plugin.search_action.trigger()
    wait_until(lambda: plugin.client.state == "ready", 30, "ready")
    pid = plugin.client.pid()

    def broken() -> None:
        raise RuntimeError("wrapped C/C++ object has been deleted")

    monkeypatch.setattr(plugin, "_remove_tool", broken)
    plugin.unload()  # the failing step is logged; the others, and the worker's shutdown, run
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert QgsApplication.processingRegistry().providerById("cach") is None
    assert plugin.dock is None


def test_request_queued_while_starting_is_sent_when_ready_beats_the_start_notice(qgis_app):
    """On a busy machine Qt can deliver the worker's first line (``ready``) while the QProcess
    is still 'Starting' (its start notification not yet processed). A request queued during
    the start must be written then, never dropped: the first search of a session hung so."""
    from cach_for_qgis.model_runtime.protocol import Event
    from qgis.PyQt.QtCore import QProcess

    client = fake_client()
    try:
        req = client.request("status")
        client.start()
        assert client._proc.state() == QProcess.Starting  # noqa: SLF001 - the race itself
        client.handle_line(Event(None, "ready", {"version": "0", "protocol": 2,
                                                 "device": "cpu", "pid": 1}).to_json())
        wait_until(lambda: req.done, timeout=30, what="the queued request's answer")
        assert req.error is None and req.result is not None
    finally:
        client.shutdown()


def test_runtime_settings_detect_plugin_venv(qgis_app):
    from cach_for_qgis.cach_qgis import settings

    root = Path(__file__).resolve().parents[2]
    candidates = settings.runtime_python_candidates()
    assert settings.venv_python(root / ".venv") in candidates
    assert settings.default_runtime_dir() != root  # never inside QGIS's own site-packages


def test_runtime_installer_creates_venv_with_log(qgis_app, tmp_path):
    """The installer's steps, progress and log, with an empty requirements file (offline)."""
    from cach_for_qgis.cach_qgis.runtime_setup import RuntimeInstaller

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
