"""CACH for QGIS: search local raster archives by meaning.

QGIS calls :func:`classFactory`; everything else is imported lazily so that loading the plugin
costs nothing until it is used.
"""


def classFactory(iface):  # noqa: N802 - QGIS plugin entry point
    """Create the plugin instance for QGIS."""
    from .cach_qgis.plugin import CachPlugin

    return CachPlugin(iface)
