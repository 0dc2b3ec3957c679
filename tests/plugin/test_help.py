"""Help that works offline (issue 20): the bundled user guide as one HTML file with its images
inside, in the plugin zip; every Help button, the Help action and the Processing algorithms
open it at a section that exists; tooltips on every field; the plugin under the Raster menu."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, fake_client
from qgis.PyQt.QtWidgets import QDialogButtonBox, QFormLayout

GUIDE = ROOT / "cach_qgis" / "help" / "user-guide.html"


@pytest.fixture
def opened(monkeypatch):  # noqa: ANN001
    """The URLs the plugin asks the desktop to open (no browser starts)."""
    from cach_for_qgis.cach_qgis import guide

    urls = []

    class Desktop:
        @staticmethod
        def openUrl(url):  # noqa: N802, ANN001
            urls.append(url)
            return True

    monkeypatch.setattr(guide, "QDesktopServices", Desktop)
    return urls


def _ids() -> set[str]:
    return set(re.findall(r' id="([^"]+)"', GUIDE.read_text(encoding="utf-8")))


def _assert_guide(url) -> None:  # noqa: ANN001
    assert url.isLocalFile(), url.toString()
    assert Path(url.toLocalFile()).resolve() == GUIDE.resolve()
    assert url.fragment() in _ids(), f"no section {url.fragment()!r} in the guide"


def test_the_guide_is_html_with_its_images_inside_and_up_to_date():
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "user_guide_html.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    text = GUIDE.read_text(encoding="utf-8")
    sources = re.findall(r'<img [^>]*src="([^"]+)"', text)
    markdown = (ROOT / "docs" / "user-guide.md").read_text(encoding="utf-8")
    assert len(sources) == len(re.findall(r"!\[[^\]]*\]\(", markdown)) > 0
    assert all(src.startswith("data:image/") for src in sources), "images must be inside"


def test_the_zip_holds_the_guide(tmp_path):
    out = tmp_path / "plugin.zip"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_zip.py"), "-o", str(out)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        inside = [n for n in names if n.endswith("cach_qgis/help/user-guide.html")]
        assert inside, "the zip must hold the user guide"
        assert zf.read(inside[0]) == GUIDE.read_bytes()


def _help_button(dialog) -> object:  # noqa: ANN001
    box = dialog.findChild(QDialogButtonBox)
    button = box.button(QDialogButtonBox.StandardButton.Help)
    assert button is not None, f"{dialog.windowTitle()} has no Help button"
    return button


def _form_fields_have_tooltips(dialog) -> None:  # noqa: ANN001
    form = dialog.findChild(QFormLayout)
    for row in range(form.rowCount()):
        item = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
        widget = item.widget() if item is not None else None
        if widget is None or type(widget).__name__ == "QLabel":
            continue
        assert widget.toolTip().strip(), f"{dialog.windowTitle()}: row {row} has no tooltip"


def test_every_dialog_has_help_and_tooltips(qgis_iface, opened, no_exception_dialogs):
    from cach_for_qgis.cach_qgis import dialogs

    client = fake_client()
    index = dialogs.IndexDialog(client)
    runtime = dialogs.RuntimeDialog(client)
    adapt = dialogs.adapt_dialog("/data/cach_index")
    for dialog in (index, adapt, runtime):
        _help_button(dialog).click()
    assert len(opened) == 3
    for url in opened:
        _assert_guide(url)
    _form_fields_have_tooltips(index)
    _form_fields_have_tooltips(runtime)
    assert "photo smaller than a tile becomes one tile" in index.tile_size.toolTip()
    labels = [w.text() for w in runtime.findChildren(type(runtime.found))]
    assert not any("Tile layers per query" in t for t in labels), "moved to the search panel"
    for dialog in (index, adapt, runtime):
        dialog.deleteLater()
    client.shutdown()


def test_the_panel_configures_results_and_has_tooltips(qgis_iface, no_exception_dialogs):
    from cach_for_qgis.cach_qgis import settings
    from cach_for_qgis.cach_qgis.dock import SearchDock

    dock = SearchDock(qgis_iface, fake_client())
    dock.bar.tiles_spin.setValue(7)
    assert settings.max_tile_layers() == 7
    for widget in (
        dock.bar.index_combo,
        dock.bar.query_edit,
        dock.bar.k_spin,
        dock.bar.tiles_spin,
        dock.bar.extent_check,
        dock.bar.search_button,
        dock.marks_box.refine_button,
        dock.results,
        dock.actions.clear_button,
    ):
        assert widget.toolTip().strip(), widget
    settings.set_max_tile_layers(settings.DEFAULT_MAX_TILE_LAYERS)
    dock.deleteLater()


def test_processing_algorithms_open_the_guide(qgis_app):
    from cach_for_qgis.cach_qgis.processing.algorithms import IndexRasterFolder, TextSearch
    from qgis.PyQt.QtCore import QUrl

    for alg in (IndexRasterFolder(), TextSearch()):
        assert alg.shortHelpString().strip()
        _assert_guide(QUrl(alg.helpUrl()))


def test_plugin_sits_in_the_raster_menu_with_a_help_action(
    qgis_iface, opened, own_shared_client, monkeypatch, no_exception_dialogs
):
    import cach_for_qgis

    monkeypatch.setattr(own_shared_client, "_SHARED", fake_client())
    raster_menu = qgis_iface.addPluginToRasterMenu
    raster_menu.reset_mock()
    plugins_menu = []
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", lambda *args: plugins_menu.append(args))
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        in_raster = {call.args[1] for call in raster_menu.call_args_list}
        assert set(plugin.actions) <= in_raster and plugin.help_action in in_raster
        assert not plugins_menu, "not in the Plugins menu"
        plugin.help_action.trigger()
        assert opened and opened[-1].fragment() == ""
        _assert_guide_file = Path(opened[-1].toLocalFile()).resolve()
        assert _assert_guide_file == GUIDE.resolve()
    finally:
        plugin.unload()
    assert qgis_iface.removePluginRasterMenu.called
