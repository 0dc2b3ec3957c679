"""Long worker requests as QgsTasks: progress in the task manager, Cancel sends protocol ``cancel``."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .messages import IndexSummary, Progress, WorkerError
from .runtime_client import RuntimeClient, log


class WorkerTask(QgsTask):
    """Runs one request through :meth:`RuntimeClient.call` in the task manager's thread."""

    succeeded = pyqtSignal(object)  # result dict
    failed = pyqtSignal(object)  # WorkerError (type "cancelled" after Cancel)
    progressEvent = pyqtSignal(object)  # Progress, delivered on the UI thread

    def __init__(
        self, client: RuntimeClient, op: str, params: dict[str, Any], description: str
    ) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.client = client
        self.op = op
        self.params = dict(params)
        self.result: dict[str, Any] | None = None
        self.error: WorkerError | None = None
        self.progress_events: list[Progress] = []

    def run(self) -> bool:
        """Task-manager thread: wait on the worker, forward progress, honour Cancel."""
        try:
            self.result = self.client.call(
                self.op, self.params, progress=self._on_progress, is_cancelled=self.isCanceled
            )
        except WorkerError as err:
            self.error = err
            return False
        except Exception as err:  # never let an exception escape into the task manager
            self.error = WorkerError("internal", f"{type(err).__name__}: {err}")
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
            return
        error = self.error or WorkerError("cancelled", f"{self.description()} was cancelled.")
        if self.isCanceled() and error.type != "cancelled":
            error = WorkerError("cancelled", f"{self.description()} was cancelled.")
        log(f"{self.description()}: {error}")
        self.failed.emit(error)


class IndexTask(WorkerTask):
    """Index a folder of rasters (``index`` op); ``indexed`` fires with the summary."""

    indexed = pyqtSignal(str, object)  # index dir, IndexSummary

    def __init__(self, client: RuntimeClient, params: dict[str, Any]) -> None:
        name = str(params.get("index", ""))
        super().__init__(client, "index", params, f"CACH: indexing into {name}")
        self.summary: IndexSummary | None = None
        self.succeeded.connect(self._on_succeeded)

    def _on_succeeded(self, result: dict[str, Any]) -> None:
        self.summary = IndexSummary(result)
        self.indexed.emit(str(self.params.get("index", "")), self.summary)
