"""Translation (issue 20): every string the plugin shows reaches Qt/QGIS through self.tr() or
translate(context, ...), never as a bare literal, and the template ``i18n/cach.ts`` (``make
i18n``, pylupdate5) holds every wrapped string. The sinks checked are a widget's text, title,
tooltip, placeholder, prefix/suffix and form labels, menu actions, the message bar, QMessageBox,
file dialogs, a QgsTask description and a dock title, the CACH log, runtime errors shown to the
user, and Processing display names, groups, help and parameter descriptions."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET

from conftest import ROOT

#: method names whose string arguments the user reads: name -> argument positions (None: all)
METHODS = {
    "setText": (0,),
    "setWindowTitle": (0,),
    "setToolTip": (0,),
    "setPlaceholderText": (0,),
    "setPrefix": (0,),
    "setSuffix": (0,),
    "setSpecialValueText": (0,),
    "setTitle": (0,),
    "setStatusTip": (0,),
    "setWhatsThis": (0,),
    "addRow": (0,),
    "addTab": (1,),
    "addAction": None,
    "pushMessage": None,
    "createMessage": None,
    "addItem": (0,),
    "information": (1, 2),
    "warning": (1, 2),
    "critical": (1, 2),
    "question": (1, 2),
    "getExistingDirectory": (1,),
    "getSaveFileName": (1, 3),
    "getOpenFileName": (1, 3),
    "setLabelText": (0,),
    "showMessage": (0,),
    "_message": (0,),
    "message": (0,),
    "_fail_start": (0,),
    "notice": None,
    "addToolBar": (0,),
}
#: constructors whose string arguments the user reads
CLASSES = {
    "QLabel",
    "QPushButton",
    "QCheckBox",
    "QRadioButton",
    "QGroupBox",
    "QAction",
    "QToolButton",
    "QMenu",
    "QuestionDialog",
}
#: plain functions: name -> positions
FUNCTIONS = {"log": (0,), "say": (0,), "unavailable": (0,), "cancelled": (0,)}
PROCESSING_PARAMS = "QgsProcessingParameter"
#: Processing methods whose returned string the user reads
RETURNS = {"displayName", "group", "shortHelpString", "shortDescription"}
#: signals that carry a message for the user
SIGNALS = {"notice"}
WRAPPERS = {"tr", "translate", "QT_TRANSLATE_NOOP", "QT_TR_NOOP"}


def is_bare(node: ast.AST) -> bool:
    """A literal the user would read untranslated: text with letters, an f-string, or a sum."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return any(c.isalpha() for c in node.value)
    if isinstance(node, ast.JoinedStr):
        return any(
            isinstance(v, ast.Constant) and any(c.isalpha() for c in v.value) for v in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return is_bare(node.left) or is_bare(node.right)
    return False


def _identifier(node: ast.AST) -> bool:
    """A lowercase word such as an op name ("index"): an identifier, not text for the user."""
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.isidentifier()
        and node.value.islower()
    )


def _name(func: ast.AST | None) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def sink_args(call: ast.Call) -> list[ast.AST]:
    """The arguments of ``call`` that reach the user."""
    name = _name(call.func)
    if name in WRAPPERS:
        return []
    if name == "emit" and _name(getattr(call.func, "value", None)) in SIGNALS:
        return list(call.args)
    if (
        isinstance(call.func, ast.Attribute)
        and name == "__init__"
        and isinstance(call.func.value, ast.Call)
        and _name(call.func.value.func) == "super"
    ):
        return [a for a in call.args if not _identifier(a)]
    if name in CLASSES:
        return list(call.args) + [k.value for k in call.keywords]
    if name.startswith(PROCESSING_PARAMS):
        return call.args[1:2]
    positions = METHODS.get(name) if isinstance(call.func, ast.Attribute) else FUNCTIONS.get(name)
    if name in METHODS and isinstance(call.func, ast.Attribute) or name in FUNCTIONS:
        if positions is None:
            return list(call.args)
        return [call.args[i] for i in positions if i < len(call.args)]
    return []


def bare_sinks(tree: ast.AST) -> list[ast.AST]:
    """Every bare literal that reaches the user in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found += [a for a in sink_args(node) if is_bare(a)]
        elif isinstance(node, ast.FunctionDef) and node.name in RETURNS:
            found += [
                r.value
                for r in ast.walk(node)
                if isinstance(r, ast.Return) and r.value is not None and is_bare(r.value)
            ]
    return found


def _plugin_sources() -> dict[str, str]:
    return {
        str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "cach_qgis").rglob("*.py"))
        if p.name != "resources_rc.py"
    }


def test_the_checker_finds_bare_literals():
    source = (
        "class D(QDialog):\n"
        "    def __init__(self):\n"
        "        super().__init__('A title')\n"
        "        self.setWindowTitle('CACH')\n"
        "        self.label.setText(f'{n} tiles')\n"
        "        QPushButton(self.tr('Index'))\n"
        "        self.box.setToolTip(translate('CACH', 'A tip'))\n"
        "        self.bar.pushMessage('CACH', text)\n"
        "        log('starting ' + name)\n"
        "        self.button.setText('…')\n"
        "        self.client.request('index', params)\n"
        "    def displayName(self):\n"
        "        return 'Index raster folder'\n"
    )
    lines = sorted(node.lineno for node in bare_sinks(ast.parse(source)))
    assert lines == [3, 4, 5, 8, 9, 13]


def test_no_user_facing_string_is_a_bare_literal():
    found = []
    for path, source in _plugin_sources().items():
        for node in bare_sinks(ast.parse(source)):
            found.append(f"{path}:{node.lineno}: {ast.get_source_segment(source, node)[:70]}")
    assert not found, "wrap these in self.tr() or translate():\n" + "\n".join(found)


def _wrapped(source: str) -> set[str]:
    strings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _name(node.func) in ("tr", "translate"):
            pos = 0 if _name(node.func) == "tr" else 1
            if len(node.args) > pos and isinstance(node.args[pos], ast.Constant):
                strings.add(node.args[pos].value)
    return strings


def test_the_translation_template_is_up_to_date():
    template = ROOT / "i18n" / "cach.ts"
    assert template.is_file(), "run 'make i18n'"
    sources = {m.findtext("source") for m in ET.parse(template).getroot().iter("message")}
    wrapped = set().union(*(_wrapped(s) for s in _plugin_sources().values()))
    wrapped.discard("")
    missing = sorted(s for s in wrapped if isinstance(s, str) and s not in sources)
    assert not missing, f"not in i18n/cach.ts (run 'make i18n'): {missing[:10]}"
    assert (
        "No CACH runtime found. Create one in Raster ▸ CACH ▸ Runtime settings… ▸ "
        "Create runtime…, or set the Python of an existing one there." in sources
    )


TRANSLATED = {
    "ResultActions": {"Clear results": "Ergebnisse leeren"},
    "CachPlugin": {"Clear CACH results": "CACH-Ergebnisse leeren"},
    "@default": {
        "CACH results": "CACH-Ergebnisse",
        "Index ready: {tiles} tiles to search": "Index bereit: {tiles} Kacheln",
    },
}


def _qm(folder):  # noqa: ANN001
    """A German .qm of a few of the template's strings, made with lrelease."""
    import os
    import shutil
    import subprocess
    from xml.sax.saxutils import escape

    lrelease = shutil.which("lrelease")
    if lrelease is None:
        import pytest

        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("lrelease (qttools5-dev-tools) is needed to check translations")
        pytest.skip("lrelease not installed")
    contexts = "".join(
        f"<context><name>{name}</name>"
        + "".join(
            f"<message><source>{escape(s)}</source><translation>{escape(t)}</translation></message>"
            for s, t in messages.items()
        )
        + "</context>"
        for name, messages in TRANSLATED.items()
    )
    ts = folder / "cach_de.ts"
    ts.write_text(
        f'<?xml version="1.0" encoding="utf-8"?><TS version="2.1" language="de">{contexts}</TS>',
        encoding="utf-8",
    )
    subprocess.run(
        [lrelease, str(ts), "-qm", str(folder / "cach_de.qm")], check=True, capture_output=True
    )
    return folder / "cach_de.qm"


def test_a_translation_reaches_the_panel_the_layer_tree_and_the_messages(
    qgis_iface, tmp_path, monkeypatch, no_exception_dialogs
):
    """The contexts line up: self.tr in a class, wording.tr (@default) elsewhere, and the
    plugin installs i18n/cach_<lang>.qm for QGIS's locale."""
    from cach_for_qgis.cach_qgis import layers, plugin, settings, wording
    from cach_for_qgis.cach_qgis.dock import SearchDock
    from cach_for_qgis.model_runtime.protocol import IndexSummary
    from conftest import fake_client
    from qgis.core import QgsSettings
    from qgis.PyQt.QtCore import QCoreApplication

    (tmp_path / "i18n").mkdir()
    _qm(tmp_path / "i18n")
    monkeypatch.setattr(settings, "PLUGIN_DIR", tmp_path)
    before = QgsSettings().value("locale/userLocale", None)
    QgsSettings().setValue("locale/userLocale", "de_DE")
    translator = plugin.install_translator()
    try:
        assert translator is not None, "the plugin did not load i18n/cach_de.qm"
        dock = SearchDock(qgis_iface, fake_client())
        assert dock.actions.clear_button.text() == "Ergebnisse leeren"
        assert layers.results_root_name() == "CACH-Ergebnisse"
        summary = IndexSummary.from_json({"tiles": 12, "added": 1})
        assert wording.summary_text(summary)[0].startswith("Index bereit: 12 Kacheln")
        dock.deleteLater()
    finally:
        if translator is not None:
            QCoreApplication.removeTranslator(translator)
        if before is None:
            QgsSettings().remove("locale/userLocale")
        else:
            QgsSettings().setValue("locale/userLocale", before)
