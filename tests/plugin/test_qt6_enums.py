"""QGIS 4 (Qt6) readiness, statically: the plugin spells every Qt and QGIS enum value fully
scoped (``Qt.AlignmentFlag.AlignLeft``, ``QDialogButtonBox.StandardButton.Ok``,
``Qgis.MessageLevel.Info``), which works on Qt5 and Qt6; the Qt5-only short forms
(``Qt.AlignLeft``) are refused. No Qt6 QGIS is available here (Debian 12 ships QGIS 3.22 only),
so metadata.txt claims nothing beyond QGIS 3."""

from __future__ import annotations

import ast
import configparser
import importlib
from pathlib import Path

from conftest import ROOT

MODULES = (
    "qgis.PyQt.QtCore",
    "qgis.PyQt.QtGui",
    "qgis.PyQt.QtWidgets",
    "qgis.PyQt.QtNetwork",
    "qgis.core",
    "qgis.gui",
)


def _imported(tree: ast.AST) -> dict[str, object]:
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in MODULES:
            module = importlib.import_module(node.module)
            for alias in node.names:
                names[alias.asname or alias.name] = getattr(module, alias.name, None)
    return names


def unscoped_enums(source: str) -> list[str]:
    """``Owner.Value`` where Value is an enum value whose enum type ``Owner.Enum`` exists: the
    Qt5-only spelling of ``Owner.Enum.Value``."""
    tree = ast.parse(source)
    names = _imported(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
            continue
        owner = names.get(node.value.id)
        value = getattr(owner, node.attr, None) if owner is not None else None
        if value is None or isinstance(value, type) or not isinstance(value, int):
            continue
        enum = type(value)
        if enum not in (int, bool) and getattr(owner, enum.__name__, None) is enum:
            found.append(f"{node.lineno}: {node.value.id}.{node.attr} -> "
                         f"{node.value.id}.{enum.__name__}.{node.attr}")
    return found


def test_the_checker_finds_the_short_forms(qgis_app):
    source = (
        "from qgis.PyQt.QtCore import Qt\n"
        "from qgis.PyQt.QtWidgets import QDialogButtonBox\n"
        "a = Qt.AlignLeft\n"
        "b = Qt.AlignmentFlag.AlignLeft\n"
        "c = QDialogButtonBox.Ok | QDialogButtonBox.StandardButton.Cancel\n"
    )
    assert [f.split(":")[0] for f in unscoped_enums(source)] == ["3", "5"]


def test_the_plugin_uses_only_fully_scoped_enums(qgis_app):
    found = {}
    for path in sorted((ROOT / "cach_qgis").rglob("*.py")):
        hits = unscoped_enums(path.read_text(encoding="utf-8"))
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert not found, f"Qt5-only enum spellings (use the scoped form): {found}"


def test_metadata_claims_no_qgis_4_yet():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    assert general.get("qgisMaximumVersion", "3.99").startswith("3.")
    assert "supportsQt6" not in general or general["supportsQt6"].lower() in ("no", "false")


def test_placeholder_contacts_are_in_one_place_and_nothing_depends_on_them():
    """metadata.txt holds the project's contact fields; no plugin code or shipped help points
    at them (Help opens the bundled guide)."""
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    values = [meta["general"][k] for k in ("email", "repository", "tracker", "homepage")]
    shipped = [*(ROOT / "cach_qgis").rglob("*.py"), ROOT / "cach_qgis/help/user-guide.html"]
    for path in shipped:
        text = Path(path).read_text(encoding="utf-8")
        for value in values:
            host = value.split("#")[0].rstrip("/")
            assert host not in text, f"{path} depends on {host}"
    assert "example.org" not in (ROOT / "docs" / "user-guide.md").read_text(encoding="utf-8")
