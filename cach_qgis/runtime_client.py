"""Client of the model runtime worker (docs/protocol.md) over a QProcess.

The UI thread never waits on the model: :meth:`RuntimeClient.request` returns a
:class:`PendingRequest` whose signals fire from ``readyRead`` handlers. :meth:`RuntimeClient.call`
is the blocking form for QgsTask and Processing code running in a background thread (it marshals the
request onto the client's thread and waits there), or for the main thread in a local event loop.
"""

from __future__ import annotations

import collections

from qgis.PyQt.QtCore import QCoreApplication, QObject, QProcess, Qt, QTimer, pyqtSignal

from ..model_runtime import protocol
from ..model_runtime.protocol import Event, ModelInfo, ReadyInfo, Response
from . import settings
from .runtime_errors import LOG_TAG, WorkerError, cancelled, log, unavailable
from .runtime_lines import WorkerLines
from .runtime_process import MAX_RESTARTS, RESTART_WINDOW_S, WORKER_ARGS, ProcessSupervisor
from .runtime_requests import PendingRequest, RequestRegistry

__all__ = [
    "LOG_TAG",
    "MAX_RESTARTS",
    "RESTART_WINDOW_S",
    "WORKER_ARGS",
    "PendingRequest",
    "RuntimeClient",
    "WorkerError",
    "cancelled",
    "log",
    "protocol",
    "shared_client",
    "shutdown_shared_client",
    "unavailable",
]


class RuntimeClient(RequestRegistry, ProcessSupervisor, QObject):
    """Starts the worker on first need, speaks the protocol, restarts it after a crash.

    Its jobs live apart: the mixins :mod:`.runtime_requests` (request registry, blocking
    adapter) and :mod:`.runtime_process` (QProcess supervision), and the object ``lines``
    (:class:`~.runtime_lines.WorkerLines`: reading and dispatching the worker's output); this
    class holds the state, the signals and the ready handshake."""

    STOPPED, STARTING, READY = "stopped", "starting", "ready"

    stateChanged = pyqtSignal(str)
    ready = pyqtSignal(object)  # ReadyInfo
    deviceChanged = pyqtSignal(str)
    modelLoaded = pyqtSignal(object)  # ModelInfo, from the worker's ``loaded`` event
    #: a message for the user (text, Qgis.MessageLevel as int): crash + restart, model load failure
    notice = pyqtSignal(str, int)
    #: the worker could not be started (the message says why and what to do)
    startFailed = pyqtSignal(str)
    _submit = pyqtSignal(object)
    _cancel_job = pyqtSignal(object)

    def __init__(
        self,
        python: str | None = None,
        args: list[str] | None = None,
        cwd: str | None = None,
        start_timeout_s: float = 180.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._python = python
        self._args = list(args) if args is not None else list(WORKER_ARGS)
        self._cwd = cwd or str(settings.PLUGIN_DIR)
        self._start_timeout_ms = int(start_timeout_s * 1000)
        self._proc: QProcess | None = None
        self._state = self.STOPPED
        self._next_id = 1
        self._pending: dict[int, PendingRequest] = {}
        self._outbox: list[PendingRequest] = []
        self.lines = WorkerLines(self)
        self._stopping = False
        self._restarts: collections.deque[float] = collections.deque()
        self._start_timer: QTimer | None = None
        self.info: ReadyInfo | None = None
        self.model: ModelInfo | None = None
        #: why the last start failed ("" after a good start), for the panel's runtime line
        self.last_error = ""
        self.device: str = ""
        self._submit.connect(self._on_submit, Qt.ConnectionType.QueuedConnection)
        self._cancel_job.connect(self._on_cancel_job, Qt.ConnectionType.QueuedConnection)

    # --- configuration -------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def python(self) -> str | None:
        """The interpreter used for the next start (explicit, else from settings)."""
        return self._python or settings.resolve_runtime_python()

    def set_python(self, python: str | None) -> None:
        """Use another interpreter; a running worker is stopped and restarts on next need."""
        self._python = python
        if self._state != self.STOPPED:
            self.shutdown()

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.stateChanged.emit(state)

    def _on_ready(self, info: ReadyInfo) -> None:
        self._stop_start_timer()
        self.info = info
        self._set_device(info.device)
        log(
            self.tr(
                "runtime ready: version {version}, protocol {protocol}, device {device}, pid {pid}"
            ).format(version=info.version, protocol=info.protocol, device=info.device, pid=info.pid)
        )
        self.last_error = ""
        self._set_state(self.READY)
        self.ready.emit(info)
        outbox, self._outbox = self._outbox, []
        for req in outbox:
            self._send(req)

    def _set_device(self, device: str) -> None:
        if device == "auto":  # a preference, not a device: the loaded model says which one
            return
        if device and device != self.device:
            self.device = device
            self.deviceChanged.emit(device)

    def handle_line(self, raw: bytes | str) -> Event | Response | None:
        """Parse one worker line and dispatch it (``lines.dispatch``); returns the message, None
        for a line that is not protocol. Each stdout line passes here."""
        return self.lines.dispatch(raw)


_SHARED: RuntimeClient | None = None

def shared_client() -> RuntimeClient:
    """The one client that the dock, the map tool, tasks and Processing share."""
    global _SHARED
    if _SHARED is None:
        client = RuntimeClient()
        app = QCoreApplication.instance()
        if app is not None and client.thread() != app.thread():
            client.moveToThread(app.thread())
        _SHARED = client
    return _SHARED


def shutdown_shared_client() -> None:
    """Stop the shared worker (plugin unload)."""
    global _SHARED
    client, _SHARED = _SHARED, None
    if client is not None:
        client.shutdown()
        client.deleteLater()
