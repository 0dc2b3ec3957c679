"""Client of the model runtime worker (docs/protocol.md) over a QProcess.

The UI thread never waits on the model: :meth:`RuntimeClient.request` returns a
:class:`PendingRequest` whose signals fire from ``readyRead`` handlers. :meth:`RuntimeClient.call`
is the blocking form for QgsTask and Processing code running in a background thread (it marshals the
request onto the client's thread and waits there), or for the main thread in a local event loop.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtCore import (
    QCoreApplication,
    QEventLoop,
    QObject,
    QProcess,
    QProcessEnvironment,
    Qt,
    QThread,
    QTimer,
    pyqtSignal,
)

from ..model_runtime import protocol
from ..model_runtime.protocol import (
    ErrorInfo,
    Event,
    ModelInfo,
    Progress,
    ReadyInfo,
    Request,
    Response,
)
from . import settings, wording

LOG_TAG = "CACH"
#: the worker command after the interpreter (docs/protocol.md); settings may add options
WORKER_ARGS = ["-m", "model_runtime", "serve", "--stdio"]
#: environment that QGIS sets for its own Python/GDAL and that would break another interpreter
_SCRUBBED_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "GDAL_DATA",
    "GDAL_DRIVER_PATH",
    "PROJ_LIB",
    "PROJ_DATA",
    "VIRTUAL_ENV",
)
#: at most this many automatic restarts within RESTART_WINDOW_S after crashes
MAX_RESTARTS = 3
RESTART_WINDOW_S = 300.0


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


class PendingRequest(QObject):
    """One request in flight. Exactly one of ``succeeded``/``failed`` fires, then ``finished``."""

    progress = pyqtSignal(object)  # Progress
    succeeded = pyqtSignal(object)  # result dict
    failed = pyqtSignal(object)  # WorkerError
    finished = pyqtSignal()

    def __init__(self, client: RuntimeClient, request_id: int, op: str, params: dict[str, Any]):
        super().__init__()
        self._client = client
        self.id = request_id
        self.op = op
        self.params = params
        self.done = False
        self.result: dict[str, Any] | None = None
        self.error: WorkerError | None = None
        self.sent_at: float | None = None

    def cancel(self) -> None:
        """Ask the worker to cancel this request (it then fails with type ``cancelled``)."""
        if not self.done:
            self._client.cancel(self.id)

    def _succeed(self, result: dict[str, Any]) -> None:
        if self.done:
            return
        self.done, self.result = True, result
        self.succeeded.emit(result)
        self.finished.emit()

    def _fail(self, error: WorkerError) -> None:
        if self.done:
            return
        self.done, self.error = True, error
        self.failed.emit(error)
        self.finished.emit()


class _CallJob:
    """State shared between a blocking :meth:`RuntimeClient.call` and the client's thread."""

    def __init__(self, op: str, params: dict[str, Any]) -> None:
        self.op, self.params = op, params
        self.events: queue.Queue[Progress] = queue.Queue()
        self.done = threading.Event()
        self.request: PendingRequest | None = None
        self.result: dict[str, Any] | None = None
        self.error: WorkerError | None = None


class RuntimeClient(QObject):
    """Starts the worker on first need, speaks the protocol, restarts it after a crash."""

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
        self._stdout = b""
        self._stderr = b""
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
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

    # --- requests --------------------------------------------------------------------------------
    def request(self, op: str, params: dict[str, Any] | None = None) -> PendingRequest:
        """Send a request (starting the worker if needed); never blocks."""
        req = PendingRequest(self, self._next_id, op, dict(params or {}))
        self._next_id += 1
        self._pending[req.id] = req
        if self._state == self.READY:
            self._send(req)
        else:
            self._outbox.append(req)
            if self._state == self.STOPPED:
                # deferred so a start failure reaches handlers connected after request() returns
                QTimer.singleShot(0, self._start)
        return req

    def cancel(self, request_id: int) -> None:
        """Send the protocol ``cancel`` for a request; a request not yet sent is failed here."""
        req = self._pending.get(request_id)
        if req is None:
            return
        if req in self._outbox:
            self._outbox.remove(req)
            self._pending.pop(request_id, None)
            req._fail(cancelled(self.tr("Cancelled before it started.")))
            return
        self._write(Request(f"cancel-{request_id}", "cancel", {"target": request_id}))

    def call(
        self,
        op: str,
        params: dict[str, Any] | None = None,
        progress: Callable[[Progress], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Blocking request for background threads (QgsTask, Processing); raises WorkerError.

        From another thread the request is handed to the client's thread and this thread waits,
        polling ``is_cancelled`` (a cancel sends the protocol ``cancel``). On the client's own
        thread a local event loop runs instead, so the process's signals still arrive.
        """
        job = _CallJob(op, dict(params or {}))
        deadline = time.monotonic() + timeout_s if timeout_s else None
        cancel_sent = False
        on_own_thread = QThread.currentThread() == self.thread()
        if on_own_thread:
            self._on_submit(job)
        else:
            self._submit.emit(job)
        while not job.done.is_set():
            if on_own_thread:
                loop = QEventLoop()
                QTimer.singleShot(50, loop.quit)
                loop.exec_()
            else:
                job.done.wait(0.05)
            self._drain(job, progress)
            if not cancel_sent and is_cancelled is not None and is_cancelled():
                cancel_sent = True
                if on_own_thread:
                    self._on_cancel_job(job)
                else:
                    self._cancel_job.emit(job)
            if deadline and time.monotonic() > deadline:
                if not cancel_sent:
                    cancel_sent = True
                    job.error = cancelled(
                        self.tr("'{op}' timed out after {timeout_s:.0f} s.").format(
                            op=op, timeout_s=timeout_s
                        )
                    )
                    self._cancel_job.emit(job)
                elif time.monotonic() > deadline + 10:  # the worker ignored the cancel
                    job.error = job.error or unavailable(
                        self.tr("'{op}' did not stop.").format(op=op)
                    )
                    break
        self._drain(job, progress)
        if job.error is not None:
            raise job.error
        return job.result or {}

    @staticmethod
    def _drain(job: _CallJob, progress: Callable[[Progress], None] | None) -> None:
        while True:
            try:
                event = job.events.get_nowait()
            except queue.Empty:
                return
            if progress is not None:
                progress(event)

    def _on_submit(self, job: _CallJob) -> None:
        req = self.request(job.op, job.params)
        job.request = req
        req.progress.connect(job.events.put)

        def finish() -> None:
            if job.error is None:
                job.error = req.error
            job.result = req.result
            job.done.set()

        req.finished.connect(finish)

    def _on_cancel_job(self, job: _CallJob) -> None:
        if job.request is not None:
            job.request.cancel()

    # --- process ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker now (normally it starts on the first request)."""
        if self._state == self.STOPPED:
            self._start()

    def _start(self) -> None:
        if self._state != self.STOPPED:
            return
        python = self.python
        if not python:
            self._fail_start(
                self.tr(
                    "No CACH runtime found. Create one in Raster ▸ CACH ▸ Runtime settings… ▸ "
                    "Create runtime…, or set the Python of an existing one there."
                )
            )
            return
        self._stopping = False
        self._stdout = self._stderr = b""
        self._stderr_tail.clear()
        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        for name in _SCRUBBED_ENV:
            env.remove(name)
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("PYTHONIOENCODING", "utf-8")
        proc.setProcessEnvironment(env)
        proc.setWorkingDirectory(self._cwd)
        args = self._args + settings.worker_extra_args()
        proc.setProgram(python)
        proc.setArguments(args)
        proc.readyReadStandardOutput.connect(self._on_stdout)
        proc.readyReadStandardError.connect(self._on_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self._proc = proc
        self._set_state(self.STARTING)
        log(
            self.tr("starting runtime: {python} {join} (cwd {cwd})").format(
                python=python, join=" ".join(args), cwd=self._cwd
            )
        )
        proc.start()
        self._start_timer = QTimer(self)
        self._start_timer.setSingleShot(True)
        self._start_timer.timeout.connect(self._on_start_timeout)
        self._start_timer.start(self._start_timeout_ms)

    def _fail_start(self, message: str) -> None:
        self.last_error = message
        log(message, Qgis.MessageLevel.Critical)
        self._set_state(self.STOPPED)
        self.startFailed.emit(message)
        self._fail_all(unavailable(message))

    def _fail_all(self, error: WorkerError) -> None:
        requests = list(self._pending.values())
        self._pending.clear()
        self._outbox.clear()
        for req in requests:
            req._fail(error)

    def _stop_start_timer(self) -> None:
        if self._start_timer is not None:
            self._start_timer.stop()
            self._start_timer.deleteLater()
            self._start_timer = None

    def _on_start_timeout(self) -> None:
        if self._state == self.STARTING and self._proc is not None:
            message = (
                f"The CACH runtime did not answer within {self._start_timeout_ms // 1000} s"
                f"{self._tail_text()}."
            )
            self._discard_process()
            self._fail_start(message)

    def _discard_process(self) -> None:
        """Kill and forget the current process without treating its end as a crash."""
        proc, self._proc = self._proc, None
        self._stop_start_timer()
        if proc is None:
            return
        for signal in (
            proc.finished,
            proc.errorOccurred,
            proc.readyReadStandardOutput,
            proc.readyReadStandardError,
        ):
            try:
                signal.disconnect()
            except TypeError:
                pass
        if proc.state() != QProcess.ProcessState.NotRunning:
            proc.kill()
            proc.waitForFinished(2000)
        proc.deleteLater()

    def _write(self, request: Request) -> bool:
        """Write one request line; False when there is no running process to take it."""
        proc = self._proc
        if proc is None:
            return False
        if proc.state() == QProcess.ProcessState.Starting:
            # the worker has written to us, so it runs; on a busy machine Qt can hand us its
            # first line before the start notification that moves the state to Running
            proc.waitForStarted(2000)
        if proc.state() != QProcess.ProcessState.Running:
            log(
                self.tr("runtime not running: '{op}' was not sent").format(op=request.op),
                Qgis.MessageLevel.Warning,
            )
            return False
        proc.write((request.to_json() + "\n").encode("utf-8"))
        return True

    def _send(self, req: PendingRequest) -> None:
        req.sent_at = time.monotonic()
        if not self._write(Request(req.id, req.op, req.params)):
            self._pending.pop(req.id, None)
            req._fail(unavailable(self.tr("The CACH runtime is not running; run it again.")))

    def _tail_text(self) -> str:
        lines = [ln for ln in self._stderr_tail if ln.strip()]
        return f": {lines[-1].strip()}" if lines else ""

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._proc is not None:
            reason = self._proc.errorString()
            python = self._proc.program()
            self._discard_process()
            self._fail_start(
                self.tr(
                    "Cannot run the CACH runtime '{python}': {reason}. Choose another one "
                    "in Raster ▸ CACH ▸ Runtime settings…"
                ).format(python=python, reason=reason)
            )

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
            log(self.tr("runtime: {line}").format(line=line), level)

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
                self.tr("runtime wrote a non-protocol line: {err}").format(err=err),
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
                self.tr("runtime: {error_details}").format(
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
            log(self.tr("runtime model loaded: {value}").format(value=protocol.dumps(data)[:300]))
            self.modelLoaded.emit(self.model)
        elif event == "load_failed":
            error = ErrorInfo.from_dict(data)
            log(
                self.tr("runtime model load failed: {error_details}").format(
                    error_details=wording.error_details(error)
                ),
                Qgis.MessageLevel.Warning,
            )
            self.notice.emit(
                self.tr("The CACH model could not be loaded. {error_text}").format(
                    error_text=wording.error_text(error)
                ),
                int(Qgis.MessageLevel.Warning),
            )
        else:
            log(
                self.tr("runtime event {event}: {value}").format(
                    event=event, value=protocol.dumps(data)[:300]
                )
            )

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

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        was_ready = self._state == self.READY
        stopping = self._stopping
        self._on_stderr()
        tail = self._tail_text()
        self._discard_process()
        self._set_state(self.STOPPED)
        if stopping:
            self._fail_all(unavailable(self.tr("The CACH runtime was stopped.")))
            return
        how = "crashed" if status == QProcess.ExitStatus.CrashExit else f"exited with code {code}"
        if not was_ready:
            self._fail_start(
                self.tr(
                    "The CACH runtime could not start: it {how}{tail}. Repair it in Raster "
                    "▸ CACH ▸ Runtime settings… (Create runtime…)."
                ).format(how=how, tail=tail)
            )
            return
        in_flight = [r for r in self._pending.values() if r not in self._outbox]
        for req in in_flight:
            self._pending.pop(req.id, None)
            req._fail(
                unavailable(
                    self.tr(
                        "The CACH runtime stopped unexpectedly ({how}{tail}). Run it again; "
                        "the runtime restarts by itself."
                    ).format(how=how, tail=tail)
                )
            )
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) < MAX_RESTARTS:
            self._restarts.append(now)
            message = (
                f"The CACH runtime stopped unexpectedly ({how}); it has been restarted. "
                "Run your search again."
            )
            log(message, Qgis.MessageLevel.Warning)
            self.notice.emit(message, int(Qgis.MessageLevel.Warning))
            QTimer.singleShot(0, self._start)
        else:
            message = (
                f"The CACH runtime stopped unexpectedly ({how}{tail}) {MAX_RESTARTS} times; "
                "it will start again on the next search. If it keeps stopping, check the CACH "
                "log (View ▸ Panels ▸ Log Messages) and Raster ▸ CACH ▸ Runtime settings…"
            )
            log(message, Qgis.MessageLevel.Critical)
            self.notice.emit(message, int(Qgis.MessageLevel.Critical))
            if self._outbox:
                QTimer.singleShot(0, self._start)

    def shutdown(self, wait_ms: int = 3000) -> None:
        """Ask the worker to exit (protocol ``shutdown``); kill it if it does not."""
        proc = self._proc
        if proc is None:
            self._set_state(self.STOPPED)
            self._fail_all(unavailable(self.tr("The CACH runtime was stopped.")))
            return
        self._stopping = True
        if proc.state() == QProcess.ProcessState.Running and self._state == self.READY:
            self._write(Request("shutdown", "shutdown"))
        proc.closeWriteChannel()
        if not proc.waitForFinished(wait_ms):
            proc.kill()
            proc.waitForFinished(1000)
        if self._proc is not None:  # finished() was not delivered synchronously
            self._discard_process()
            self._set_state(self.STOPPED)
            self._fail_all(unavailable(self.tr("The CACH runtime was stopped.")))

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning

    def pid(self) -> int | None:
        return int(self._proc.processId()) if self.is_running() else None


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
