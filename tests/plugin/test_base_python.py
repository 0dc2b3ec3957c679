"""Creating a runtime starts from a Python that really runs (not a broken shim on PATH)."""

from __future__ import annotations

import os
import stat
import sys

import pytest


def test_find_base_python_skips_interpreters_that_do_not_run(tmp_path, monkeypatch):
    pytest.importorskip("qgis.core")
    from cach_for_qgis.cach_qgis.runtime_setup import find_base_python

    # like a pyenv shim for a version that is not selected: found on PATH, exits 127
    for name in ("python3.11", "python3.12"):
        shim = tmp_path / name
        shim.write_text("#!/bin/sh\necho 'pyenv: command not found' >&2\nexit 127\n")
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = find_base_python()
    assert found is not None and not found.startswith(str(tmp_path))
    assert os.access(found, os.X_OK) or found == sys.executable
