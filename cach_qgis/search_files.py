"""The search panel's file choosers: where to save the footprints, where to keep a refined
search, and which saved search to run. Each returns the chosen path, or "" when cancelled."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtWidgets import QFileDialog, QWidget

from .wording import tr


def _chosen(choose, parent: QWidget, title: str, start: Path, kinds: str) -> str:
    path, _ = choose(parent, title, str(start), kinds)
    return path


def footprints_path(parent: QWidget) -> str:
    """The GeoPackage to write the shown result's footprints to."""
    return _chosen(QFileDialog.getSaveFileName, parent, tr("Save footprints"),
                   Path.home() / "cach_results.gpkg", tr("GeoPackage (*.gpkg)"))


def save_search_path(parent: QWidget) -> str:
    """The file to keep the refined search (its words and marks) in."""
    return _chosen(QFileDialog.getSaveFileName, parent, tr("Save refined search"),
                   Path.home() / "cach_search.json", tr("CACH saved search (*.json)"))


def saved_search_path(parent: QWidget) -> str:
    """A saved refined search to run."""
    return _chosen(QFileDialog.getOpenFileName, parent, tr("Run saved search"), Path.home(),
                   tr("CACH saved search (*.json)"))
