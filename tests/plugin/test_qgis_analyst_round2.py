"""Issue 20 in real QGIS: what an analyst meets (no runtime, cancel on short runs, the layer
tree after many queries, similar tiles from a map click, confidence in the list)."""

from __future__ import annotations

import pytest
from conftest import link_folder, wait_until
from qgis.core import Qgis, QgsProject


@pytest.fixture
def plugin(qgis_iface, runtime_python, own_shared_client, qgis_new_project):  # noqa: ANN001
    import cach_for_qgis
    from qgis.core import QgsSettings

    QgsSettings().setValue("cach/runtime_python", runtime_python)
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


def test_no_runtime_is_shown_in_the_panel_with_the_button_that_fixes_it(
    qgis_iface, message_bar, no_exception_dialogs, monkeypatch, own_shared_client
):
    import cach_for_qgis
    from cach_for_qgis.cach_qgis import dialogs, settings
    from qgis.core import QgsSettings

    QgsSettings().remove("cach/runtime_python")
    monkeypatch.setattr(settings, "resolve_runtime_python", lambda: None)
    plugin = cach_for_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        plugin.search_action.trigger()  # the analyst opens the panel
        dock = plugin.dock
        wait_until(lambda: bool(dock.client.last_error), 10, "the failed start")
        assert dock.runtime_problem.isVisibleTo(dock), "the problem must be in the panel"
        assert "No CACH runtime found" in dock.runtime_problem_label.text()
        assert "starts when this panel opens" not in dock.runtime_label.text()
        assert dock.runtime_button.isVisibleTo(dock)
        # Search with no index names the runtime, not "choose an index folder"
        dock.index_combo.setCurrentText("")
        dock.query_edit.setText("forest")
        dock.search()
        texts = message_bar.get_messages(Qgis.Warning) + message_bar.get_messages(Qgis.Info)
        assert texts and not any("Choose an index folder" in t for t in texts), texts
        dock.runtime_button.click()
        shown = [d for d in plugin.dialogs if isinstance(d, dialogs.RuntimeDialog)]
        assert shown and shown[0].isVisible(), "the button opens the Runtime dialog"
    finally:
        plugin.unload()
