"""CACH model runtime: encoders, hash heads, raster tiling, the hash index and the worker.

Plain Python + PyTorch; never imports Qt or qgis. Heavy modules load lazily.
"""

__version__ = "0.1.0"
