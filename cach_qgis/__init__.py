"""CACH for QGIS: the plugin side (Qt/QGIS only; the model runs in a separate worker process)."""
