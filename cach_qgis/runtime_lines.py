"""Line parsing for :class:`~.runtime_client.RuntimeClient`: the worker's stdout lines go
through the protocol module and are dispatched to requests and client signals; stderr lines go to
the QGIS message log."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis
from qgis.PyQt.QtCore import QCoreApplication

from ..model_runtime import protocol
from ..model_runtime.protocol import ErrorInfo, Event, ModelInfo, Progress, ReadyInfo, Response
from . import wording
from .runtime_errors import WorkerError, log


class LineReader:
    """Mixin of :class:`~.runtime_client.RuntimeClient`: reads and dispatches worker output."""

    def _on_stderr(self) -> None:
        if self._proc is None:
            return
        self._stderr += bytes(self._proc.readAllStandardError())
        *lines, self._stderr = self._stderr.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._stderr_tail.append(line)
            level = Qgis.MessageLevel.Info
            if line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback")):
                level = Qgis.MessageLevel.Warning
            log(
                QCoreApplication.translate("RuntimeClient", "runtime: {line}").format(line=line),
                level,
            )

    def _on_stdout(self) -> None:
        if self._proc is None:
            return
        self._stdout += bytes(self._proc.readAllStandardOutput())
        *lines, self._stdout = self._stdout.split(b"\n")
        for raw in lines:
            if raw.strip():
                self.handle_line(raw)

    def handle_line(self, raw: bytes | str) -> Event | Response | None:
        """Parse one worker line with the protocol module and dispatch it; returns the message
        (None for a line that is not protocol, which is logged and ignored)."""
        try:
            msg = protocol.parse_message(raw)
        except protocol.ProtocolError as err:
            log(
                QCoreApplication.translate(
                    "RuntimeClient", "runtime wrote a non-protocol line: {err}"
                ).format(err=err),
                Qgis.MessageLevel.Warning,
            )
            return None
        if isinstance(msg, Event):
            self._handle_event(msg)
        else:
            self._handle_response(msg)
        return msg

    def _handle_event(self, event: Event) -> None:
        if event.id is None:
            self._handle_worker_event(event.event, event.data)
        elif event.event == "progress" and event.id in self._pending:
            self._pending[event.id].progress.emit(Progress.from_json(event.data))

    def _handle_response(self, response: Response) -> None:
        rid = response.id
        if isinstance(rid, str) and rid.startswith("cancel-"):
            return  # answer to our cancel; the target request gets its own response
        if rid is None and not response.ok and response.error is not None:
            log(
                QCoreApplication.translate("RuntimeClient", "runtime: {error_details}").format(
                    error_details=wording.error_details(response.error)
                ),
                Qgis.MessageLevel.Warning,
            )
            return
        req = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if req is None:
            return
        if response.ok:
            req._succeed(dict(response.result or {}))
        else:
            req._fail(WorkerError(response.error or ErrorInfo("internal", "no error given")))

    def _handle_worker_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "ready":
            self._on_ready(ReadyInfo.from_json(data))
        elif event == "loaded":
            self.model = ModelInfo.from_json(data)
            device = data.get("device") or data.get("device_name")
            if device:
                self._set_device(str(device))
            log(
                QCoreApplication.translate("RuntimeClient", "runtime model loaded: {value}").format(
                    value=protocol.dumps(data)[:300]
                )
            )
            self.modelLoaded.emit(self.model)
        elif event == "load_failed":
            error = ErrorInfo.from_dict(data)
            log(
                QCoreApplication.translate(
                    "RuntimeClient", "runtime model load failed: {error_details}"
                ).format(error_details=wording.error_details(error)),
                Qgis.MessageLevel.Warning,
            )
            self.notice.emit(
                QCoreApplication.translate(
                    "RuntimeClient", "The CACH model could not be loaded. {error_text}"
                ).format(error_text=wording.error_text(error)),
                int(Qgis.MessageLevel.Warning),
            )
        else:
            log(
                QCoreApplication.translate(
                    "RuntimeClient", "runtime event {event}: {value}"
                ).format(event=event, value=protocol.dumps(data)[:300])
            )
