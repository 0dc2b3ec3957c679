"""CACH model runtime: encoders, hash heads, raster tiling, the hash index and the worker.

Plain Python + PyTorch; never imports Qt or qgis. Heavy modules load lazily.
"""

import os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting make torch and faiss many times slower whenever another
# process (QGIS rendering, a second job) holds a core; passive waiting costs nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
