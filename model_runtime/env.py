"""Process set-up for the runtime's entry points (CLI, worker job process, Ray actors).

Importing ``model_runtime`` changes nothing in the importing process: QGIS imports
``model_runtime.protocol`` into its own Python, which must keep its own settings. The processes
that run models call :func:`configure_process` once, before torch, faiss or ONNX Runtime load.
"""

from __future__ import annotations

import logging
import os

#: environment defaults of a model process; an explicit value in the environment wins
PROCESS_ENV = {
    # OpenMP threads that spin while waiting make torch and faiss 20-40x slower on small work
    # (one query: ~490 ms instead of ~15 ms) whenever another process holds a core, as QGIS
    # rendering does. Passive waiting costs nothing measurable on batches.
    "OMP_WAIT_POLICY": "PASSIVE",
    # never reach a model hub: every weight is a local file
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # GDAL messages raised outside a rasterio environment (reads in reader threads) would go to
    # GDAL's default handler, which prints "Warning 1: ..." on stderr; the same messages reach
    # Python's logging (deduplicated below) where rasterio's handler is active
    "CPL_LOG": os.devnull,
    # ONNX Runtime (1.32 here) otherwise keeps a persistent device id and a telemetry
    # database under ~/.cache/Microsoft/DeveloperTools/.onnxruntime; read when it is imported,
    # so this must be set before the first "import onnxruntime"
    "ORT_DISABLE_TELEMETRY": "1",
}


def configure_process() -> None:
    """Set :data:`PROCESS_ENV` defaults and quiet libraries that log noise at INFO."""
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    # faiss logs which SIMD build it tried on every start
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    quiet_gdal()


#: GDAL warnings about file metadata that do not change the pixels read (logged at debug level)
HARMLESS_GDAL = ("TIFFReadDirectory", "TIFFFetchNormalTag", "Unknown field with tag",
                 "Sum of Photometric", "ASCII value for tag", "outside of projection domain")


class GdalWarnings(logging.Filter):
    """Each distinct GDAL warning once (GDAL names the file in most of them, so once per file);
    warnings that do not change the result at debug level. Installed on rasterio's loggers."""

    MAX_SEEN = 10_000

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        if len(self.seen) < self.MAX_SEEN:
            self.seen.add(message)
        if any(marker in message for marker in HARMLESS_GDAL):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_gdal() -> None:
    """Install :class:`GdalWarnings` once on the loggers rasterio reports GDAL messages to."""
    for name in ("rasterio._env", "rasterio._base", "rasterio._io", "rasterio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, GdalWarnings) for f in logger.filters):
            logger.addFilter(GdalWarnings())
