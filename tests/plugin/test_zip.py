"""Build the plugin zip with scripts/make_zip.py (the README's ``make zip``), unattended and
with an empty home, and check it against the QGIS plugin repository's rules."""

from __future__ import annotations

import configparser
import importlib.util
import os
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
def built(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The README's zip command as a fresh, unattended machine runs it: stdin closed (no
    terminal to answer a prompt) and an empty home (no QGIS profile)."""
    work = tmp_path_factory.mktemp("zip")
    home = tmp_path_factory.mktemp("home")
    target = work / f"{TOP}.zip"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_zip.py"), "-o", str(target)],
        cwd=ROOT,
        env={**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target, home, proc


@pytest.fixture(scope="module")
def plugin_zip(built) -> Path:
    return built[0]


def test_zip_runs_unattended_and_touches_no_profile(built):
    target, home, proc = built
    assert target.is_file() and "y/N" not in proc.stdout + proc.stderr
    written = list(home.rglob("*"))
    assert written == [], f"the zip command wrote into the home (a QGIS profile?): {written}"
    assert not (ROOT / f"{TOP}.zip.part").exists()


def test_make_zip_and_the_readme_use_the_unattended_builder():
    recipe = subprocess.run(["make", "-n", "zip"], cwd=ROOT, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert recipe.returncode == 0, recipe.stderr
    assert "scripts/make_zip.py" in recipe.stdout and "pb_tool" not in recipe.stdout, recipe.stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pb_tool zip" not in readme and "make zip" in readme


def test_zip_ships_only_tracked_files(plugin_zip):
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.splitlines())
    with zipfile.ZipFile(plugin_zip) as zf:
        names = [n.split("/", 1)[1] for n in zf.namelist()]
    assert names and not [n for n in names if n not in tracked]


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
