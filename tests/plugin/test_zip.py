"""Build the plugin zip with pb_tool and check it against the QGIS plugin repository's rules."""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

TOP = "cach_for_qgis"
MAX_BYTES = 25 * 1024 * 1024
#: fields the plugin repository requires, plus the ones this project promises
REQUIRED_FIELDS = (
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "repository",
)
PROMISED_FIELDS = (
    "tracker",
    "homepage",
    "tags",
    "experimental",
    "changelog",
    "icon",
    "category",
    "hasProcessingProvider",
    "license",
)
FORBIDDEN_PARTS = {
    "tests",
    "bench",
    "docs",
    ".git",
    "__pycache__",
    ".venv",
    ".venv-qgis",
    ".qgis-settings",
    ".pytest_cache",
    ".ruff_cache",
}


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("zip")
    pb_tool = shutil.which("pb_tool", path=str(Path(sys.executable).parent)) or shutil.which(
        "pb_tool"
    )
    assert pb_tool, "pb_tool missing: scripts/setup_qgis.sh installs it into .venv-qgis"
    assert shutil.which("zip"), "the 'zip' program is missing (apt-get install zip)"
    built = ROOT / f"{TOP}.zip"
    built.unlink(missing_ok=True)
    proc = subprocess.run(
        [pb_tool, "zip", "--quick", "--no-docs", "--plugin_path", str(work / "deploy")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    target = work / f"{TOP}.zip"
    shutil.move(built, target)
    return target


def test_zip_follows_repository_rules(plugin_zip):
    assert plugin_zip.stat().st_size < MAX_BYTES
    with zipfile.ZipFile(plugin_zip) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {TOP}, f"more than one top-level folder: {tops}"
    for name in names:
        parts = set(Path(name).parts[1:])
        assert not parts & FORBIDDEN_PARTS, f"{name} must not be in the zip"
        assert not name.endswith((".pyc", ".pyo")), name
        assert not Path(name).name.startswith("test_"), name
    for needed in (
        "__init__.py",
        "metadata.txt",
        "LICENSE",
        "cach_qgis/plugin.py",
        "cach_qgis/resources_rc.py",
        "cach_qgis/processing/algorithms.py",
        "model_runtime/worker.py",
        "resources/icons/icon.png",
        "requirements/runtime.txt",
    ):
        assert f"{TOP}/{needed}" in names, f"{needed} missing from the zip"


def test_zip_metadata_is_complete(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        text = zf.read(f"{TOP}/metadata.txt").decode("utf-8")
        names = set(zf.namelist())
    meta = configparser.ConfigParser()
    meta.read_string(text)
    general = meta["general"]
    for field in REQUIRED_FIELDS + PROMISED_FIELDS:
        assert general.get(field, "").strip(), f"metadata.txt: '{field}' missing or empty"
    assert general["experimental"].strip().lower() in ("true", "false")
    assert f"{TOP}/{general['icon'].strip()}" in names
    assert general["version"].strip()[0].isdigit()
    assert general["qgisMinimumVersion"].startswith("3.")


def test_zipped_plugin_loads_through_class_factory(plugin_zip, tmp_path, qgis_iface):
    from qgis.core import QgsApplication

    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(tmp_path)
    name = "cach_for_qgis_from_zip"
    spec = importlib.util.spec_from_file_location(
        name, tmp_path / TOP / "__init__.py", submodule_search_locations=[str(tmp_path / TOP)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        plugin = module.classFactory(qgis_iface)
        plugin.initGui()
        assert QgsApplication.processingRegistry().providerById("cach") is not None
        plugin.unload()
        assert QgsApplication.processingRegistry().providerById("cach") is None
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
