"""The worker's output for :class:`~.runtime_client.RuntimeClient`: stdout lines go through the
protocol module and are dispatched to the client's requests and signals; stderr lines go to the
QGIS message log, the last ones kept to explain a crash. One :class:`WorkerLines` per client
(``client.lines``), holding the partial lines between reads."""

from __future__ import annotations

import collections
from typing import Any

from qgis.core import Qgis
from qgis.PyQt.QtCore import QCoreApplication

from ..model_runtime import protocol
from ..model_runtime.protocol import ErrorInfo, Event, ModelInfo, Progress, ReadyInfo, Response
from . import wording
from .runtime_errors import WorkerError, log


class WorkerLines:
    """Reads one client's worker process output and dispatches each protocol line."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.stdout = b""
        self.stderr = b""
        #: the worker's last stderr lines, to say why it stopped
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)

    def reset(self) -> None:
        """A new process: no partial lines, no tail."""
        self.stdout = self.stderr = b""
        self.stderr_tail.clear()

    def tail_text(self) -> str:
        """``": <last stderr line>"``, or "" when the worker wrote none."""
        lines = [ln for ln in self.stderr_tail if ln.strip()]
        return f": {lines[-1].strip()}" if lines else ""

    def read_stderr(self) -> None:
        proc = self.client._proc
        if proc is None:
            return
        self.stderr += bytes(proc.readAllStandardError())
        *lines, self.stderr = self.stderr.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.stderr_tail.append(line)
            level = Qgis.MessageLevel.Info
            if line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback")):
                level = Qgis.MessageLevel.Warning
            log(
                QCoreApplication.translate("RuntimeClient", "runtime: {line}").format(line=line),
                level,
            )

    def read_stdout(self) -> None:
        proc = self.client._proc
        if proc is None:
            return
        self.stdout += bytes(proc.readAllStandardOutput())
        *lines, self.stdout = self.stdout.split(b"\n")
        for raw in lines:
            if raw.strip():
                self.client.handle_line(raw)  # the client's hook (the contract test records it)

    def dispatch(self, raw: bytes | str) -> Event | Response | None:
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
            self._event(msg)
        else:
            self._response(msg)
        return msg

    def _event(self, event: Event) -> None:
        pending = self.client._pending
        if event.id is None:
            self._worker_event(event.event, event.data)
        elif event.event == "progress" and event.id in pending:
            pending[event.id].progress.emit(Progress.from_json(event.data))

    def _response(self, response: Response) -> None:
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
        req = self.client._pending.pop(rid, None) if isinstance(rid, int) else None
        if req is None:
            return
        if response.ok:
            req._succeed(dict(response.result or {}))
        else:
            req._fail(WorkerError(response.error or ErrorInfo("internal", "no error given")))

    def _worker_event(self, event: str, data: dict[str, Any]) -> None:
        client = self.client
        if event == "ready":
            client._on_ready(ReadyInfo.from_json(data))
        elif event == "loaded":
            client.model = ModelInfo.from_json(data)
            device = data.get("device") or data.get("device_name")
            if device:
                client._set_device(str(device))
            log(
                QCoreApplication.translate("RuntimeClient", "runtime model loaded: {value}").format(
                    value=protocol.dumps(data)[:300]
                )
            )
            client.modelLoaded.emit(client.model)
        elif event == "load_failed":
            error = ErrorInfo.from_dict(data)
            log(
                QCoreApplication.translate(
                    "RuntimeClient", "runtime model load failed: {error_details}"
                ).format(error_details=wording.error_details(error)),
                Qgis.MessageLevel.Warning,
            )
            client.notice.emit(
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
