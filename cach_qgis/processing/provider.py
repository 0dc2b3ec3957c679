"""The CACH Processing provider: registers the algorithms, nothing else."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .. import settings


class CachProvider(QgsProcessingProvider):
    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS API
        from .algorithms import IndexRasterFolder, RunSavedSearch, TextSearch

        self.addAlgorithm(IndexRasterFolder())
        self.addAlgorithm(TextSearch())
        self.addAlgorithm(RunSavedSearch())

    def id(self) -> str:
        return "cach"

    def name(self) -> str:
        return "CACH"

    def longName(self) -> str:  # noqa: N802 - QGIS API
        return "CACH: search raster archives by meaning"

    def icon(self) -> QIcon:
        return QIcon(str(settings.PLUGIN_DIR / "resources" / "icons" / "icon.svg"))
