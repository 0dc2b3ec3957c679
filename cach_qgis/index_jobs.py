"""Index and adapt runs as tasks in QGIS's task manager: started, kept alive until they end, and
reported. An index run that asks for a go-ahead (a very large run, another tiling) is asked
about, and resent with ``confirm``; a cancelled run is checked, since a cancel can arrive after
the last tile was written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtWidgets import QWidget

from ..model_runtime.protocol import Estimate, IndexRequest, IndexSummary
from . import wording
from .dialogs import QuestionDialog, confirm_retile_dialog, confirm_run_dialog
from .message_bar import LEVELS
from .runtime_client import PendingRequest, RuntimeClient, WorkerError
from .tasks import AdaptTask, IndexTask, WorkerTask, is_active, is_alive

#: what a job tells the analyst: (text, level, details)
Say = Callable[..., None]


class IndexJobs(QObject):
    """The plugin's running index and adapt tasks."""

    #: an index is ready to search (made, or found complete after a cancel): its path
    indexReady = pyqtSignal(str)
    #: an index was adapted to its archive: its path
    adapted = pyqtSignal(str)

    def __init__(
        self,
        client: RuntimeClient,
        window: QWidget | None,
        say: Say,
        keep: Callable[[Any], None],
    ) -> None:
        super().__init__()
        self.client = client
        self.window = window
        self._message = say
        self.keep = keep  # keeps a non-modal dialog alive while it is open
        self.tasks: list[WorkerTask] = []

    def start_index(self, call: IndexRequest) -> IndexTask:
        """Start an indexing task (e.g. a large run resent with ``confirm``)."""
        task = IndexTask(self.client, call)
        QgsApplication.taskManager().addTask(task)
        self.track(task)
        return task

    def adapt_index(self, index: str, steps: int | None = None) -> AdaptTask:
        """Start "Adapt to this archive" as a task with progress and Cancel."""
        task = AdaptTask(self.client, index, steps)
        task.succeeded.connect(lambda result: self._adapted(index, result))
        task.failed.connect(lambda error: self._failed(self.tr("Adapting"), error))
        QgsApplication.taskManager().addTask(task)
        self.track(task)
        self._message(
            self.tr(
                "Adapting the model to this archive; progress and Cancel are in the task manager "
                "(status bar)."
            ),
            Qgis.MessageLevel.Info,
        )
        return task

    def track(self, task: WorkerTask) -> None:
        """Keep the task's Python side alive until it ends, and report its end."""
        self.tasks.append(task)
        task.ended.connect(lambda: self._forget(task))
        if isinstance(task, IndexTask):
            call = task.call
            task.indexed.connect(self._indexed)
            task.failed.connect(lambda error: self.index_failed(call, error))

    def stop(self) -> None:
        """Cancel running tasks and detach them; never touch deleted ones (plugin unload)."""
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            if not is_alive(task):
                continue
            for signal in (task.succeeded, task.failed, task.ended):
                try:
                    signal.disconnect()
                except (TypeError, RuntimeError):
                    pass
            if is_active(task):
                task.cancel()

    def _forget(self, task: WorkerTask) -> None:
        self.tasks = [t for t in self.tasks if t is not task]

    def _indexed(self, index: str, summary: IndexSummary) -> None:
        text, level = wording.summary_text(summary)
        if not summary.indexed_nothing:
            self.indexReady.emit(index)
        self._message(text, LEVELS[level], details=wording.skipped_details(summary.skipped))

    def index_failed(self, call: IndexRequest, error: WorkerError) -> None:
        """An index run ended without a summary: ask for a go-ahead, check a cancel, or say
        why it failed."""
        if error.code == "confirm_large_run":
            estimate = Estimate.from_json(error.details.get("estimate") or {})
            self._ask(call, confirm_run_dialog(estimate, self.window))
        elif error.code == "confirm_retile":
            self._ask(call, confirm_retile_dialog(dict(error.details), self.window))
        elif error.cancelled:
            self.check_cancelled_run(call)
        else:
            self._failed(self.tr("Indexing"), error)

    def _ask(self, call: IndexRequest, dialog: QuestionDialog) -> QuestionDialog:
        """Show ``dialog``; its go-ahead resends the run with ``confirm``."""
        dialog.accepted.connect(lambda: self.start_index(replace(call, confirm=True)))
        self.keep(dialog)
        dialog.open()
        return dialog

    def check_cancelled_run(self, call: IndexRequest) -> PendingRequest:
        """A cancel can arrive after the last tile was written (short runs): ask the runtime
        (a dry run) what is still to do, and report what really happened."""
        req = self.client.send(replace(call, rebuild=False, confirm=False, dry_run=True))
        index = call.index
        req.succeeded.connect(lambda raw: self._cancel_outcome(index, Estimate.from_json(raw)))
        req.failed.connect(
            lambda _err: self._message(wording.index_cancelled_text(), Qgis.MessageLevel.Info)
        )
        return req

    def _cancel_outcome(self, index: str, estimate: Estimate) -> None:
        text, complete = wording.cancel_outcome_text(estimate)
        if complete:
            self.indexReady.emit(index)
        self._message(text, Qgis.MessageLevel.Success if complete else Qgis.MessageLevel.Info)

    def _adapted(self, index: str, result: dict[str, Any]) -> None:
        self.adapted.emit(index)
        self._message(wording.adapt_done_text(result), Qgis.MessageLevel.Success)

    def _failed(self, what: str, error: WorkerError) -> None:
        if error.cancelled:
            self._message(
                self.tr("{what} cancelled; nothing was changed.").format(what=what),
                Qgis.MessageLevel.Info,
            )
            return
        level = LEVELS[wording.error_level(error.info)]
        self._message(
            self.tr("{what} failed. {error_text}").format(
                what=what, error_text=wording.error_text(error.info)
            ),
            level,
            details=wording.error_details(error.info),
        )
