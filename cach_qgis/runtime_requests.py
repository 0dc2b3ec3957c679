"""The request side of :class:`~.runtime_client.RuntimeClient`: the registry of requests in
flight (ids, the outbox held until the worker is ready, cancel) and the blocking adapter
(:meth:`call`) that QgsTask and Processing code use from background threads. Requests are the
protocol's typed requests (:class:`SearchRequest`, ...), sent as their ``to_params()``."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from qgis.PyQt.QtCore import QCoreApplication, QEventLoop, QObject, QThread, QTimer, pyqtSignal

from ..model_runtime.protocol import OpRequest, Progress, Request
from .runtime_errors import WorkerError, cancelled, unavailable


class PendingRequest(QObject):
    """One request in flight. Exactly one of ``succeeded``/``failed`` fires, then ``finished``."""

    progress = pyqtSignal(object)  # Progress
    succeeded = pyqtSignal(object)  # result dict
    failed = pyqtSignal(object)  # WorkerError
    finished = pyqtSignal()

    def __init__(
        self,
        client: RequestRegistry,
        request_id: int,
        op: str,
        params: dict[str, Any],
        call: OpRequest | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self.id = request_id
        self.op = op
        self.params = params  # as sent
        self.call = call  # the typed request it was sent from, if any
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

    def __init__(self, op: str, params: dict[str, Any], call: OpRequest | None = None) -> None:
        self.op, self.params, self.call = op, params, call
        self.events: queue.Queue[Progress] = queue.Queue()
        self.done = threading.Event()
        self.request: PendingRequest | None = None
        self.result: dict[str, Any] | None = None
        self.error: WorkerError | None = None


class RequestRegistry:
    """Mixin of :class:`~.runtime_client.RuntimeClient`: sends, tracks and cancels requests.

    Uses the client's state, ``_pending``, ``_outbox``, ``_next_id``, ``_start``, ``_write`` and
    its ``_submit``/``_cancel_job`` signals."""

    def send(self, call: OpRequest) -> PendingRequest:
        """Send a typed request (its ``to_params()``, starting the worker if needed); never
        blocks."""
        return self.request(call.OP, call.to_params(), call)

    def request(
        self, op: str, params: dict[str, Any] | None = None, call: OpRequest | None = None
    ) -> PendingRequest:
        """Send a request by op and params (starting the worker if needed); never blocks."""
        req = PendingRequest(self, self._next_id, op, dict(params or {}), call)
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
            req._fail(
                cancelled(
                    QCoreApplication.translate("RuntimeClient", "Cancelled before it started.")
                )
            )
            return
        self._write(Request(f"cancel-{request_id}", "cancel", {"target": request_id}))

    def call(
        self,
        op: str | OpRequest,
        params: dict[str, Any] | None = None,
        progress: Callable[[Progress], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Blocking request for background threads (QgsTask, Processing); raises WorkerError.

        From another thread the request is handed to the client's thread and this thread waits,
        polling ``is_cancelled`` (a cancel sends the protocol ``cancel``). On the client's own
        thread a local event loop runs instead, so the process's signals still arrive. ``op``
        may be a typed request, which then brings its own params.
        """
        typed = op if isinstance(op, OpRequest) else None
        if typed is not None:
            op, params = typed.OP, typed.to_params()
        job = _CallJob(op, dict(params or {}), typed)
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
                        QCoreApplication.translate(
                            "RuntimeClient", "'{op}' timed out after {timeout_s:.0f} s."
                        ).format(op=op, timeout_s=timeout_s)
                    )
                    self._cancel_job.emit(job)
                elif time.monotonic() > deadline + 10:  # the worker ignored the cancel
                    job.error = job.error or unavailable(
                        QCoreApplication.translate("RuntimeClient", "'{op}' did not stop.").format(
                            op=op
                        )
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
        req = self.request(job.op, job.params, job.call)
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

    def _fail_all(self, error: WorkerError) -> None:
        requests = list(self._pending.values())
        self._pending.clear()
        self._outbox.clear()
        for req in requests:
            req._fail(error)

    def _send(self, req: PendingRequest) -> None:
        req.sent_at = time.monotonic()
        if not self._write(Request(req.id, req.op, req.params)):
            self._pending.pop(req.id, None)
            req._fail(
                unavailable(
                    QCoreApplication.translate(
                        "RuntimeClient", "The CACH runtime is not running; run it again."
                    )
                )
            )
