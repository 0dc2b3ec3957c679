"""The search panel's file choosers: where to save the footprints, where to keep a refined
search, and which saved search to run. Each returns the chosen path, or "" when cancelled."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtWidgets import QFileDialog, QWidget

from .wording import tr


def footprints_path(parent: QWidget) -> str:
    """The GeoPackage to write the shown result's footprints to."""
    path, _ = QFileDialog.getSaveFileName(
        parent,
        tr("Save footprints"),
        str(Path.home() / "cach_results.gpkg"),
        tr("GeoPackage (*.gpkg)"),
    )
    return path


def save_search_path(parent: QWidget) -> str:
    """The file to keep the refined search (its words and marks) in."""
    path, _ = QFileDialog.getSaveFileName(
        parent,
        tr("Save refined search"),
        str(Path.home() / "cach_search.json"),
        tr("CACH saved search (*.json)"),
    )
    return path


def saved_search_path(parent: QWidget) -> str:
    """A saved refined search to run."""
    path, _ = QFileDialog.getOpenFileName(
        parent,
        tr("Run saved search"),
        str(Path.home()),
        tr("CACH saved search (*.json)"),
    )
    return path
