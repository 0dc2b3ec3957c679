"""One exception hierarchy for the runtime. Messages are written for the user who caused them.

Only the CLI's ``main`` turns these into an exit code; the worker turns them into error
responses; the plugin turns those into message-bar text.
"""

from __future__ import annotations


class CachError(Exception):
    """Base class: ``str(err)`` is a message a user can act on."""

    #: short machine-readable kind, used by the worker protocol (``error.type``)
    kind = "error"


class DataError(CachError):
    """An input file (image, caption file, raster) is missing, unreadable or malformed."""

    kind = "data"


class ConfigError(CachError):
    """A backbone or model configuration is unknown or invalid."""

    kind = "config"


class ModelMismatchError(CachError):
    """Weights or an index were made for another backbone, bit length or model."""

    kind = "model_mismatch"


class IndexStateError(CachError):
    """An index is missing, incomplete or corrupt."""

    kind = "index"


class CancelledError(CachError):
    """The user cancelled a long-running operation."""

    kind = "cancelled"


class DiskFullError(CachError):
    """Writing failed because the disk is full; nothing half-written was kept."""

    kind = "disk_full"
