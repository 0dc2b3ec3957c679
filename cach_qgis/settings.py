"""Plugin settings (QgsSettings under ``cach/``) and where things live on disk."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

PLUGIN_DIR = Path(__file__).resolve().parent.parent
PREFIX = "cach/"
DEFAULT_TOP_K = 20
DEFAULT_MAX_TILE_LAYERS = 20
RECENT_MAX = 10
#: written into a runtime folder by the last step of "Create runtime" (the kind, lean or full)
READY_MARKER = ".cach-runtime-ready"
#: written into .venv by scripts/setup.sh once it has finished
SETUP_STAMP = ".cach-setup-stamp"


def _settings() -> QgsSettings:
    return QgsSettings()


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment, on any platform."""
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def data_dir() -> Path:
    """Per-profile folder for the plugin's own files (runtime venv, tile VRTs)."""
    base = Path(QgsApplication.qgisSettingsDirPath() or Path.home() / ".cach")
    return base / "cach"


def default_runtime_dir() -> Path:
    """Where "Create runtime" puts its virtual environment (outside QGIS's site-packages)."""
    return data_dir() / "runtime"


def tiles_dir() -> Path:
    """Folder for the VRT windows of result tiles (small XML files, no pixel copies)."""
    return data_dir() / "tiles"


def runtime_python() -> str:
    """The configured runtime interpreter; empty when none was chosen."""
    return str(_settings().value(PREFIX + "runtime_python", "", type=str) or "")


def set_runtime_python(path: str) -> None:
    _settings().setValue(PREFIX + "runtime_python", path)


def runtime_python_candidates() -> list[Path]:
    """Interpreters to try, best first: configured, plugin's .venv, the plugin-made runtime.

    ``.venv-full`` (scripts/setup.sh --with-torch: the developers' torch environment) is never
    one: the plugin uses it only when a user chooses it as the runtime Python."""
    found: list[Path] = []
    env = os.environ.get("CACH_RUNTIME_PYTHON")
    for cand in (
        runtime_python(),
        env,
        venv_python(PLUGIN_DIR / ".venv"),
        venv_python(default_runtime_dir()),
    ):
        if cand:
            path = Path(cand)
            if path not in found:
                found.append(path)
    return found


def _managed_dirs() -> list[Path]:
    """Runtime folders that setup.sh or "Create runtime" make (and mark when finished)."""
    return [PLUGIN_DIR / ".venv", default_runtime_dir(), data_dir() / "runtime-gpu"]


def runtime_ready(python: Path) -> bool:
    """False for the interpreter of a runtime whose creation did not finish (cancelled, failed,
    still running): such a folder holds a Python that starts but lacks packages."""
    venv = Path(python).parent.parent
    if (venv / READY_MARKER).is_file() or (venv / SETUP_STAMP).is_file():
        return True
    log_file = venv / "cach-install.log"
    if log_file.is_file():  # made by an earlier "Create runtime": its last line says how it ended
        try:
            lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return False
        return bool(lines) and lines[-1].startswith("OK: ")
    return venv.resolve() not in {d.resolve() for d in _managed_dirs()}


def resolve_runtime_python() -> str | None:
    """First candidate that exists, is executable and whose creation finished, else None."""
    for cand in runtime_python_candidates():
        if cand.is_file() and os.access(cand, os.X_OK) and runtime_ready(cand):
            return str(cand)
    return None


def index_path() -> str:
    return str(_settings().value(PREFIX + "index_path", "", type=str) or "")


def set_index_path(path: str) -> None:
    s = _settings()
    s.setValue(PREFIX + "index_path", path)
    recent = [p for p in recent_indexes() if p != path]
    s.setValue(PREFIX + "recent_indexes", [path, *recent][:RECENT_MAX])


def recent_indexes() -> list[str]:
    value = _settings().value(PREFIX + "recent_indexes", [])
    if isinstance(value, str):
        value = [value] if value else []
    return [str(v) for v in value or [] if v]


def top_k() -> int:
    return int(_settings().value(PREFIX + "top_k", DEFAULT_TOP_K, type=int))


def set_top_k(k: int) -> None:
    _settings().setValue(PREFIX + "top_k", int(k))


def max_tile_layers() -> int:
    """How many result tiles become raster layers (all of them get footprints)."""
    return int(_settings().value(PREFIX + "max_tile_layers", DEFAULT_MAX_TILE_LAYERS, type=int))


def set_max_tile_layers(n: int) -> None:
    _settings().setValue(PREFIX + "max_tile_layers", int(n))


def worker_extra_args() -> list[str]:
    """Extra worker options, e.g. ``--device cuda --bits 128`` (setting, else $CACH_WORKER_ARGS)."""
    value = str(_settings().value(PREFIX + "worker_args", "", type=str) or "")
    return shlex.split(value or os.environ.get("CACH_WORKER_ARGS", ""))
