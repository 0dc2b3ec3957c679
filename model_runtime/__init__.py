"""CACH model runtime: encoders, hash heads, raster tiling, the hash index and the worker.

Plain Python; never imports Qt or qgis. Importing the package has no side effects (the plugin
imports ``model_runtime.protocol`` inside QGIS's own Python): processes that run models call
``model_runtime.env.configure_process()``.
"""

__version__ = "0.2.0"
