"""One exception hierarchy for the runtime. Messages are written for the user who caused them.

Only the CLI's ``main`` turns these into an exit code; the worker turns them into error
responses (``type`` = the class's ``kind``, ``code`` = the instance's ``code``); the plugin words
them for QGIS users from the code. The codes are listed, with their meaning, in
``model_runtime.protocol.ERROR_CODES``. Standard library only: ``protocol`` imports this module
inside QGIS's own Python.
"""

from __future__ import annotations

from typing import Any


class CachError(Exception):
    """Base class: ``str(err)`` is a message a user can act on.

    ``code`` is a stable machine-readable name of what went wrong (``ERROR_CODES`` in
    ``protocol``); ``details`` carries structured facts a client may show (an estimate, a path).
    """

    #: the protocol's ``error.type`` of this class
    kind = "error"
    #: the code used when a raise gives none
    default_code = "error"

    def __init__(self, message: str = "", code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.details = details


class DataError(CachError):
    """An input file (image, caption file, raster) is missing, unreadable or malformed."""

    kind = "data"
    default_code = "data_unreadable"


class ConfigError(CachError):
    """A value, option or backbone configuration is unknown or invalid."""

    kind = "config"
    default_code = "bad_value"


class ModelMismatchError(CachError):
    """Weights or an index were made for another backbone, bit length or model."""

    kind = "model_mismatch"
    default_code = "model_mismatch"


class IndexStateError(CachError):
    """An index is missing, incomplete, locked or corrupt."""

    kind = "index"
    default_code = "index_corrupt"


class CancelledError(CachError):
    """The user cancelled a long-running operation."""

    kind = "cancelled"
    default_code = "cancelled"


class DiskFullError(CachError):
    """Writing failed because the disk is full; nothing half-written was kept."""

    kind = "disk_full"
    default_code = "disk_full"


class ConfirmationNeeded(CachError):
    """A run is larger than the user may expect; it waits for an explicit go-ahead.

    ``details["estimate"]`` holds the dry-run estimate (files, tiles, bytes, seconds)."""

    kind = "confirm"
    default_code = "confirm_large_run"


class ProtocolError(CachError):
    """A request line is malformed: not JSON, not an object, unknown op or bad params."""

    kind = "protocol"
    default_code = "bad_request"

    def __init__(self, message: str, request_id: Any = None, code: str | None = None) -> None:
        super().__init__(message, code)
        self.request_id = request_id


#: optional packages -> (what they are, how to get them); a missing one is a coded error
OPTIONAL_MODULES = {
    "torch": ("PyTorch", "the full environment ('scripts/setup.sh --with-torch', then "
              ".venv-full/bin/cach; in QGIS: Runtime settings > GPU and training)"),
    "torchvision": ("PyTorch", ""), "open_clip": ("PyTorch", ""), "timm": ("PyTorch", ""),
    "transformers": ("PyTorch", ""), "sentence_transformers": ("PyTorch", ""),
    "openvino": ("OpenVINO", "'scripts/setup.sh --with-openvino' (or --backend onnx, the default)"),
    "matplotlib": ("matplotlib", "'pip install -r requirements/research.txt' in .venv-full"),
    "ray": ("Ray", "'pip install -r requirements/ray.txt' (or --executor local)"),
    "boto3": ("boto3", "'pip install -r requirements/s3.txt'"),
}


def missing_extra(err: BaseException) -> ConfigError | None:
    """A :class:`ConfigError` (``extra_missing``) for an ImportError of an optional package that
    this runtime does not hold (the lean runtime has no PyTorch), else None."""
    if not isinstance(err, ImportError):
        return None
    top = (getattr(err, "name", None) or "").split(".")[0]
    if top not in OPTIONAL_MODULES:
        return None
    what, how = OPTIONAL_MODULES[top]
    how = how or OPTIONAL_MODULES["torch"][1]
    if what == "PyTorch":
        message = ("PyTorch is not installed in this runtime, the lean one (index, search, "
                   "captions, adaptation and evaluation run without it). Training, feature "
                   f"extraction, research and the torch backend need {how}.")
    else:
        message = f"{what} is not installed in this runtime: install it with {how}."
    return ConfigError(message, code="extra_missing", module=top)
