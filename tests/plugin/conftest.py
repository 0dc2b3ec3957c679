"""Fixtures for the plugin tests: real QGIS (pytest-qgis), the real worker, a sample index.

Run with ``scripts/test_qgis.sh`` (Debian's python3-qgis through .venv-qgis, headless).
Without QGIS the tests are skipped locally but fail loudly when CI=true: CI must run them.

The plugin is imported the way QGIS imports it: as the package ``cach_for_qgis`` (a link to the
repository root in a temporary plugins folder), so ``cach_qgis`` reaches the protocol through
its relative import ``..model_runtime.protocol``. The repository root itself is taken off
``sys.path``: a plugin module importing ``cach_qgis`` or ``model_runtime`` at top level fails here
as it would in QGIS.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

try:
    import pytest_qgis  # noqa: F401
    import qgis.core  # noqa: F401

    HAVE_QGIS = True
except ImportError as err:  # pragma: no cover - depends on the interpreter
    HAVE_QGIS = False
    if CI and os.environ.get("CACH_QGIS_TESTS") != "skip":
        pytest.exit(
            f"CI=true but QGIS/pytest-qgis cannot be imported ({err}). Run the plugin tests with "
            "scripts/test_qgis.sh (Debian python3-qgis + .venv-qgis from scripts/setup_qgis.sh), "
            "or set CACH_QGIS_TESTS=skip explicitly in a job that is not meant to run them.",
            returncode=3,
        )
    collect_ignore_glob = ["test_*.py"]
    print(f"tests/plugin skipped: QGIS not importable ({err})", file=sys.stderr)

PACKAGE = "cach_for_qgis"


def _plugins_folder() -> Path:
    """A temporary plugins folder holding ``cach_for_qgis`` -> the repository root."""
    folder = Path(tempfile.mkdtemp(prefix="cach-plugins-"))
    link = folder / PACKAGE
    link.symlink_to(ROOT, target_is_directory=True)
    atexit.register(_remove_link, link)
    return folder


def _remove_link(link: Path) -> None:
    """Remove the link itself (never what it points at), then its folder."""
    try:
        link.unlink()
        link.parent.rmdir()
    except OSError:
        pass


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == ROOT
    except OSError:
        return False


PLUGINS_FOLDER = _plugins_folder()
sys.path[:] = [entry for entry in sys.path if not _is_root(entry)]
sys.path.insert(0, str(PLUGINS_FOLDER))

RUNTIME_PYTHON = Path(os.environ.get("CACH_RUNTIME_PYTHON", ROOT / ".venv" / "bin" / "python"))
SAMPLES = ROOT / "resources" / "samples"
SHARED_DATA = Path(os.environ.get("CACH_DATA", ROOT.parent / "shared" / "data"))
SHARED_GEOTIFF = SHARED_DATA / "geotiff"
UCM_IMAGES = SHARED_DATA / "ucm" / "images"
RASTER_SUFFIXES = (".tif", ".tiff")


def wait_until(predicate: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
    """Process Qt events until ``predicate()`` is true; fail after ``timeout`` seconds."""
    from qgis.core import QgsApplication

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        QgsApplication.processEvents()
        time.sleep(0.005)


class TickMonitor:
    """A QTimer on the UI thread; ``max_gap`` shows the longest time it could not fire."""

    def __init__(self, interval_ms: int = 20) -> None:
        from qgis.PyQt.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.monotonic()))

    def __enter__(self) -> TickMonitor:
        self.ticks = [time.monotonic()]
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.stop()
        self.ticks.append(time.monotonic())

    @property
    def max_gap(self) -> float:
        return max((b - a for a, b in zip(self.ticks, self.ticks[1:], strict=False)), default=0.0)


FAKE_WORKER = Path(__file__).with_name("fake_worker.py")


def fake_client(scenario: dict | None = None, tmp_path: Path | None = None):
    """A runtime client driving tests/plugin/fake_worker.py (with an optional scenario)."""
    from cach_for_qgis.cach_qgis.runtime_client import RuntimeClient

    args = [str(FAKE_WORKER)]
    if scenario is not None and tmp_path is not None:
        path = tmp_path / "scenario.json"
        path.write_text(json.dumps(scenario))
        args.append(str(path))
    return RuntimeClient(python=sys.executable, args=args)


def sample_rasters() -> list[Path]:
    """The bundled sample rasters (resources/samples), else a few shared test rasters."""
    found = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES)
    if found:
        return found
    fallback = [
        SHARED_GEOTIFF / "rasterio" / "cogeo.tif",
        SHARED_GEOTIFF / "naip" / "m_4709963_se_14_1_20200831.tif",
    ]
    return [p for p in fallback if p.exists()]


def link_folder(rasters: list[Path], folder: Path) -> Path:
    """A folder holding ``rasters``: hard links, or copies across file systems. Never symlinks:
    the runtime refuses a link that leads outside the folders the user named."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in rasters:
        target = folder / path.name
        if not target.exists():
            try:
                os.link(path, target)
            except OSError:
                shutil.copy(path, target)
    return folder


@pytest.fixture(scope="session")
def runtime_python() -> str:
    """The runtime interpreter made by the README setup (fail in CI when missing)."""
    if not RUNTIME_PYTHON.exists():
        if CI:
            pytest.fail(f"runtime Python {RUNTIME_PYTHON} missing: run scripts/setup.sh first")
        pytest.skip(f"runtime Python {RUNTIME_PYTHON} missing (scripts/setup.sh makes it)")
    return str(RUNTIME_PYTHON)


@pytest.fixture(scope="session", autouse=True)
def _isolated_settings(qgis_app):  # noqa: ANN001 - pytest-qgis fixture
    """Start every session from empty CACH settings."""
    from qgis.core import QgsSettings

    QgsSettings().remove("cach")
    yield
    QgsSettings().remove("cach")


@pytest.fixture(scope="session")
def shared(qgis_app, runtime_python):  # noqa: ANN001
    """The shared runtime client, configured like the plugin would find it."""
    from cach_for_qgis.cach_qgis import settings
    from cach_for_qgis.cach_qgis.runtime_client import shared_client, shutdown_shared_client

    settings.set_runtime_python(runtime_python)
    client = shared_client()
    yield client
    shutdown_shared_client()


@pytest.fixture(scope="session")
def rasters() -> list[Path]:
    found = sample_rasters()
    if not found:
        pytest.fail("no sample rasters in resources/samples nor ../shared/data/geotiff")
    return found


@pytest.fixture(scope="session")
def sample_index(shared, rasters, tmp_path_factory) -> str:  # noqa: ANN001
    """An index of the sample rasters built in a tmp dir through the worker's ``index`` op."""
    folder = link_folder(rasters, tmp_path_factory.mktemp("samples"))
    index = tmp_path_factory.mktemp("index") / "cach_index"
    result = shared.call("index", {"index": str(index), "paths": [str(folder)]}, timeout_s=900)
    assert result.get("tiles", 0) > 0, result
    return str(index)


@pytest.fixture
def message_bar(qgis_iface):  # noqa: ANN001
    """pytest-qgis's message bar, emptied before the test."""
    bar = qgis_iface.messageBar()
    bar.clear_messages()
    return bar


@pytest.fixture
def no_exception_dialogs(monkeypatch):  # noqa: ANN001
    """Record anything that would reach QGIS's exception dialog (sys.excepthook)."""
    seen: list[BaseException] = []

    def hook(exc_type, exc, tb):  # noqa: ANN001
        seen.append(exc)

    monkeypatch.setattr(sys, "excepthook", hook)
    yield seen
    assert not seen, f"unhandled exceptions reached sys.excepthook: {seen!r}"


@pytest.fixture
def own_shared_client(monkeypatch):  # noqa: ANN001
    """The plugin under test makes its own shared client (and its unload stops only that one);
    the session's ``shared`` client is put back afterwards."""
    from cach_for_qgis.cach_qgis import runtime_client

    monkeypatch.setattr(runtime_client, "_SHARED", None)
    yield runtime_client
    runtime_client.shutdown_shared_client()
