"""Long worker requests as QgsTasks: progress in the task manager, Cancel sends protocol ``cancel``.

The task manager deletes a task's C++ object once it has finished, while Python may still hold
the wrapper: :func:`is_alive` tells the two apart, so nothing touches a deleted task.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsTask
from qgis.PyQt import sip
from qgis.PyQt.QtCore import pyqtSignal

from ..model_runtime.protocol import AdaptRequest, IndexRequest, IndexSummary, OpRequest, Progress
from .runtime_client import RuntimeClient, WorkerError, cancelled, log
from .wording import tr


def is_alive(task: QgsTask | None) -> bool:
    """True while ``task``'s C++ object exists (the task manager deletes finished tasks)."""
    if task is None:
        return False
    try:
        return not sip.isdeleted(task)
    except (RuntimeError, TypeError):
        return False


def is_active(task: QgsTask | None) -> bool:
    """True for a live task that is queued, on hold or running."""
    if not is_alive(task):
        return False
    try:
        return task.status() in (
            QgsTask.TaskStatus.Queued,
            QgsTask.TaskStatus.OnHold,
            QgsTask.TaskStatus.Running,
        )
    except RuntimeError:  # deleted between the two calls
        return False


class WorkerTask(QgsTask):
    """Runs one typed request through :meth:`RuntimeClient.call` in the task manager's thread."""

    succeeded = pyqtSignal(object)  # result dict
    failed = pyqtSignal(object)  # WorkerError (type "cancelled" after Cancel)
    progressEvent = pyqtSignal(object)  # Progress, delivered on the UI thread
    ended = pyqtSignal()  # after succeeded/failed, on the UI thread

    def __init__(self, client: RuntimeClient, call: OpRequest, description: str) -> None:
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.client = client
        self.call = call
        self.op = call.OP
        self.params = call.to_params()  # as sent
        self.result: dict[str, Any] | None = None
        self.error: WorkerError | None = None
        self.progress_events: list[Progress] = []

    def run(self) -> bool:
        """Task-manager thread: wait on the worker, forward progress, honour Cancel."""
        try:
            self.result = self.client.call(
                self.call, progress=self._on_progress, is_cancelled=self.isCanceled
            )
        except WorkerError as err:
            self.error = err
            return False
        except Exception as err:  # never let an exception escape into the task manager
            self.error = WorkerError.of("internal", f"{type(err).__name__}: {err}")
            return False
        return True

    def _on_progress(self, progress: Progress) -> None:
        self.progress_events.append(progress)
        if progress.percent is not None:
            self.setProgress(progress.percent)
        self.progressEvent.emit(progress)

    def finished(self, ok: bool) -> None:
        """UI thread: report the outcome through signals."""
        if ok and self.result is not None:
            self.succeeded.emit(self.result)
        else:
            error = self.error or cancelled(
                tr("{description} was cancelled.").format(description=self.description())
            )
            if self.isCanceled() and not error.cancelled:
                error = cancelled(
                    tr("{description} was cancelled.").format(description=self.description())
                )
            log(f"{self.description()}: {error} [{error.code}]")
            self.failed.emit(error)
        self.ended.emit()


class IndexTask(WorkerTask):
    """Index a folder of rasters (``index`` op); ``indexed`` fires with the summary."""

    indexed = pyqtSignal(str, object)  # index dir, IndexSummary

    def __init__(self, client: RuntimeClient, call: IndexRequest) -> None:
        super().__init__(client, call, tr("CACH: indexing into {name}").format(name=call.index))
        self.summary: IndexSummary | None = None
        self.succeeded.connect(self._on_succeeded)

    def _on_succeeded(self, result: dict[str, Any]) -> None:
        self.summary = IndexSummary.from_json(result)
        self.indexed.emit(self.call.index, self.summary)


class AdaptTask(WorkerTask):
    """Fine-tune the index's image head to its own archive and re-hash it (``adapt`` op)."""

    def __init__(self, client: RuntimeClient, index: str, steps: int | None = None) -> None:
        super().__init__(
            client,
            AdaptRequest(index, steps or None),
            tr("CACH: adapting the model to {index}").format(index=index),
        )
