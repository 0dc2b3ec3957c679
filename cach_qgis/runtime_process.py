"""Process supervision for :class:`~.runtime_client.RuntimeClient`: starting the worker in a
QProcess with a clean environment, the start timeout, restarts after a crash, and shutdown."""

from __future__ import annotations

import time

from qgis.core import Qgis
from qgis.PyQt.QtCore import QCoreApplication, QProcess, QProcessEnvironment, QTimer

from ..model_runtime.protocol import Request
from . import settings
from .runtime_errors import log, unavailable

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


class ProcessSupervisor:
    """Mixin of :class:`~.runtime_client.RuntimeClient`: owns the worker QProcess.

    Uses the client's state, ``_set_state``, ``_fail_all``, the ``_pending``/``_outbox``
    registry and the output reader ``lines`` (:class:`~.runtime_lines.WorkerLines`)."""

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
                QCoreApplication.translate(
                    "RuntimeClient",
                    "No CACH runtime found. Create one in Raster ▸ CACH ▸ Runtime settings… ▸ "
                    "Create runtime…, or set the Python of an existing one there."
                )
            )
            return
        self._stopping = False
        self.lines.reset()
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
        proc.readyReadStandardOutput.connect(self.lines.read_stdout)
        proc.readyReadStandardError.connect(self.lines.read_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self._proc = proc
        self._set_state(self.STARTING)
        log(
            QCoreApplication.translate(
                "RuntimeClient", "starting runtime: {python} {join} (cwd {cwd})"
            ).format(python=python, join=" ".join(args), cwd=self._cwd)
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

    def _stop_start_timer(self) -> None:
        if self._start_timer is not None:
            self._start_timer.stop()
            self._start_timer.deleteLater()
            self._start_timer = None

    def _on_start_timeout(self) -> None:
        if self._state == self.STARTING and self._proc is not None:
            message = (
                f"The CACH runtime did not answer within {self._start_timeout_ms // 1000} s"
                f"{self.lines.tail_text()}."
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
                QCoreApplication.translate(
                    "RuntimeClient", "runtime not running: '{op}' was not sent"
                ).format(op=request.op),
                Qgis.MessageLevel.Warning,
            )
            return False
        proc.write((request.to_json() + "\n").encode("utf-8"))
        return True

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._proc is not None:
            reason = self._proc.errorString()
            python = self._proc.program()
            self._discard_process()
            self._fail_start(
                QCoreApplication.translate(
                    "RuntimeClient",
                    "Cannot run the CACH runtime '{python}': {reason}. Choose another one "
                    "in Raster ▸ CACH ▸ Runtime settings…"
                ).format(python=python, reason=reason)
            )

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        was_ready = self._state == self.READY
        stopping = self._stopping
        self.lines.read_stderr()
        tail = self.lines.tail_text()
        self._discard_process()
        self._set_state(self.STOPPED)
        if stopping:
            self._fail_all(
                unavailable(
                    QCoreApplication.translate("RuntimeClient", "The CACH runtime was stopped.")
                )
            )
            return
        how = "crashed" if status == QProcess.ExitStatus.CrashExit else f"exited with code {code}"
        if not was_ready:
            self._fail_start(
                QCoreApplication.translate(
                    "RuntimeClient",
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
                    QCoreApplication.translate(
                        "RuntimeClient",
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
            self._fail_all(
                unavailable(
                    QCoreApplication.translate("RuntimeClient", "The CACH runtime was stopped.")
                )
            )
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
            self._fail_all(
                unavailable(
                    QCoreApplication.translate("RuntimeClient", "The CACH runtime was stopped.")
                )
            )

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning

    def pid(self) -> int | None:
        return int(self._proc.processId()) if self.is_running() else None
