"""The search panel's runtime lines: where the runtime runs, and when it cannot run, why and the
button that fixes it (Runtime settings…). Follows the client's state by its signals."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QFrame, QLabel, QPushButton, QVBoxLayout, QWidget

from . import wording
from .runtime_client import RuntimeClient

PROBLEM_STYLE = (
    "QFrame#CachRuntimeProblem { background:#f8d7da; border:1px solid #f1aeb5; }"
    "QLabel { color:#58151c; border:none; }"
)


class RuntimeBox(QWidget):
    """The runtime's state in a line, and the problem box shown while it cannot run."""

    #: the analyst pressed the problem's button: open the Runtime dialog
    settingsRequested = pyqtSignal()

    def __init__(self, client: RuntimeClient, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        layout.addWidget(self.label)
        layout.addWidget(self._problem_box())
        for signal in (
            client.stateChanged,
            client.deviceChanged,
            client.modelLoaded,
            client.startFailed,
        ):
            signal.connect(self.refresh)
        self.refresh()

    def _problem_box(self) -> QFrame:
        """Where the analyst looks: why the runtime cannot run, and the button that fixes it."""
        self.problem = QFrame()
        self.problem.setObjectName("CachRuntimeProblem")
        self.problem.setStyleSheet(PROBLEM_STYLE)
        box = QVBoxLayout(self.problem)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextFormat(Qt.TextFormat.PlainText)
        self.button = QPushButton(self.tr("Runtime settings…"))
        self.button.setToolTip(
            self.tr("Create the CACH runtime, or choose the Python of an existing one")
        )
        self.button.clicked.connect(self.settingsRequested)
        box.addWidget(self.problem_label)
        box.addWidget(self.button, 0, Qt.AlignmentFlag.AlignLeft)
        self.problem.setVisible(False)
        return self.problem

    def refresh(self, *_args: Any) -> None:
        """Say the client's state; show the problem box while the runtime cannot run."""
        state, device = self.client.state, self.client.device
        if state == RuntimeClient.READY:
            text = (
                self.tr("Runtime ready on <b>{device}</b>").format(device=device)
                if device
                else self.tr("Runtime ready; loading the model…")
            )
        elif state == RuntimeClient.STARTING:
            text = self.tr("Starting the CACH runtime…")
        elif self.client.last_error:
            text = self.tr("The CACH runtime is not running.")
        else:
            text = self.tr("The runtime starts when this panel opens.")
        self.label.setText(text)
        problem = self.client.last_error if state == RuntimeClient.STOPPED else ""
        self.problem_label.setText(problem)
        self.problem.setVisible(bool(problem))
        model = self.client.model
        self.label.setToolTip(wording.model_details(model.to_json(), {}) if model else "")
