"""The reaper of a local Ray cluster (``ray_local.py``), run as a script of its own::

    python -I ray_reaper.py RUN_ID DRIVER_PID      (stdin: a pipe from the driver)

Ray starts gcs_server and the raylet fate-shared with the driver, and the workers follow the
raylet, but the runtime-env and dashboard agents outlive a ``kill -9`` of the driver: left
without their raylet they try to report to the dead GCS, and ignore SIGTERM meanwhile. Their
environment cannot be relied on to find them either (Ray rewrites their process title over it).

So while the driver lives, this process notes (every 0.5 s) the cluster's processes: the
driver's children that carry ``CACH_RAY_RUN=RUN_ID`` in their environment (gcs_server, the
raylet, Ray's monitors) and every descendant of those, with its start time (a reused pid is
never taken for one of them). When its stdin ends (the driver closed it after shutting Ray
down, or died), it sends SIGTERM to each noted process still alive, waits up to 3 s, then
SIGKILL. Standard library only, nothing imported from the package: it must start in
milliseconds and work whatever state the driver died in.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

POLL_S = 0.5
TERM_WAIT_S = 3.0


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[1]), fields[19]) if fields[0] != "Z" else None
    except (OSError, IndexError, ValueError):
        return None


def _table() -> dict[int, tuple[int, str]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            out[int(entry)] = st
    return out


def _marked(pid: int, mark: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return mark in fh.read().split(b"\0")
    except OSError:
        return False


class Cluster:
    """The processes of one local cluster, noted while the driver lives."""

    def __init__(self, run_id: str, driver: int) -> None:
        self.mark, self.driver = f"CACH_RAY_RUN={run_id}".encode(), driver
        self.seen: dict[int, str] = {}  # pid -> start time

    def note(self) -> dict[int, tuple[int, str]]:
        procs = _table()
        kids: dict[int, list[int]] = {}
        for pid, (ppid, _) in procs.items():
            kids.setdefault(ppid, []).append(pid)
        for pid in kids.get(self.driver, []):
            if pid not in self.seen and pid != os.getpid() and _marked(pid, self.mark):
                self.seen[pid] = procs[pid][1]
        todo = [p for p in self.seen if p in procs]
        while todo:
            for child in kids.get(todo.pop(), []):
                if child not in self.seen:
                    self.seen[child] = procs[child][1]
                    todo.append(child)
        return procs

    def alive(self) -> list[int]:
        procs = self.note()
        return [p for p, start in self.seen.items() if p in procs and procs[p][1] == start]


def main(argv: list[str]) -> None:
    cluster = Cluster(argv[1], int(argv[2]))
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver closed the pipe, or died
        cluster.note()
    for sig, wait in ((signal.SIGTERM, TERM_WAIT_S), (signal.SIGKILL, 0.0)):
        for pid in cluster.alive():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        end = time.monotonic() + wait
        while time.monotonic() < end and cluster.alive():
            time.sleep(0.2)


if __name__ == "__main__":
    main(sys.argv)
