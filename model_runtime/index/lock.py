"""One writer per index: an advisory lock on ``<index>/.cach-write.lock``.

A second ``cach index`` run (or the plugin's Index task) on the same index exits at once with a
clear message naming the holder, instead of doing all the work again and churning tile ids. The
lock is released by the operating system when the holder dies (kill -9 included), so a crash
never leaves an index locked.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import IO

from model_runtime.errors import ConfigError, IndexStateError

LOCK_NAME = ".cach-write.lock"


def _try_lock(fh: IO[str]) -> bool:
    if os.name == "nt":  # pragma: no cover - Windows analysts' QGIS
        import msvcrt

        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


#: folders of the kernel's and devices' pseudo file systems: no index can live there
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def refuse_system_folder(index_dir: str | os.PathLike) -> None:
    """A coded configuration error for an index folder under /proc, /sys or /dev (writing
    there fails in ways no user can act on, or writes into the kernel)."""
    real = os.path.realpath(index_dir)
    for top in SYSTEM_FOLDERS:
        if real == top or real.startswith(top + "/"):
            raise ConfigError(f"{index_dir} is in {top}, a system folder that cannot hold an "
                              "index; choose a folder on a disk.", code="bad_value",
                              path=str(index_dir))


class IndexLock:
    """``with IndexLock(dir):`` holds the index for writing, or raises ``index_locked``."""

    def __init__(self, index_dir: str | os.PathLike) -> None:
        self.path = Path(index_dir) / LOCK_NAME
        self._fh: IO[str] | None = None

    def __enter__(self) -> IndexLock:
        refuse_system_folder(self.path.parent)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until __exit__
        except OSError as err:
            if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            from model_runtime.index.store import readonly_error

            raise readonly_error(self.path.parent, "be written (indexed into or adapted)") from err
        if not _try_lock(fh):
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise IndexStateError(
                f"Another indexing run ({holder}) is writing the index at {self.path.parent}. "
                "Wait for it to finish or cancel it, then run this one again.",
                code="index_locked",
            )
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None
