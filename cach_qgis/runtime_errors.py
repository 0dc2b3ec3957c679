"""Errors and logging shared by the runtime client's parts: :class:`WorkerError` and the
``CACH`` message-log tag."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsMessageLog

from ..model_runtime import protocol
from ..model_runtime.protocol import ErrorInfo

LOG_TAG = "CACH"


def log(message: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
    """Write to the QGIS message log under the ``CACH`` tag."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class WorkerError(Exception):
    """A failed request: the protocol's :class:`ErrorInfo` (type, code, message, details).

    ``str(err)`` is the runtime's own message; the plugin words it for users from ``code``
    (:mod:`cach_qgis.wording`). Errors of the plugin's own making (no runtime, a crash) have
    code ``worker_unavailable`` and a message already written for QGIS users."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info

    @classmethod
    def of(cls, code: str, message: str, **details: Any) -> WorkerError:
        """An error made on the plugin's side, with a code of ``protocol.ERROR_CODES``."""
        return cls(ErrorInfo(protocol.error_type_of(code), message, code, details))

    @property
    def type(self) -> str:
        return self.info.type

    @property
    def code(self) -> str:
        return self.info.code

    @property
    def details(self) -> dict[str, Any]:
        return self.info.details

    @property
    def cancelled(self) -> bool:
        return self.info.type == "cancelled"


def unavailable(message: str) -> WorkerError:
    """The runtime cannot answer (not found, cannot start, stopped, crashed)."""
    return WorkerError.of("worker_unavailable", message)


def cancelled(message: str = "Cancelled.") -> WorkerError:
    return WorkerError.of("cancelled", message)
