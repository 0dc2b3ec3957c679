"""A real Ray cluster for tests: ``ray start --head --block`` in its own process group on
loopback only, joined by address with token authentication on (Ray's default), stopped by
killing that group (never ``ray stop``, which would stop every Ray of this user). Every wait is
bounded. Its workers import ``model_runtime`` and this folder's helpers (``conftest``).

The token is made for this test process in a private folder (``ray_local.token_file``: 0700
folder, 0600 file) and handed to the cluster and its drivers by ``RAY_AUTH_TOKEN_PATH``: nothing
is read from or written to ``~/.ray``, so the tests pass with an empty home."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass
class RayCluster:
    address: str
    marker: str  # an environment value every process of this cluster carries
    proc: subprocess.Popen
    log: Path

    def processes(self, name_part: str) -> list[int]:
        """PIDs of this cluster's processes whose command line contains ``name_part``."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                env = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if name_part in cmd and f"CACH_TEST_CLUSTER={self.marker}".encode() in env:
                found.append(int(entry))
        return found

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGKILL:
                return
        # the head exited on SIGTERM; its children share its group: make sure they are gone
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def driver_env(**extra: str) -> dict[str, str]:
    """Environment of a process that joins a test cluster (or starts a local one): this test
    process's private token, loopback only, no ``RAY_AUTH_TOKEN`` of the caller's."""
    from model_runtime.index.ray_local import local_environment

    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
    # a cluster made by 'ray start' (not ray.init) posts a "usage stats disabled" note to
    # usage-stats.ray.io even with usage stats off: here it goes to a closed loopback port
    return {**env, **local_environment(), "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]), **extra}


def start(folder: Path, cpus: int = 2, timeout: float = 180) -> RayCluster:
    port, marker, log = free_port(), uuid.uuid4().hex, folder / "ray-head.log"
    ray = Path(sys.executable).parent / "ray"
    env = driver_env(CACH_TEST_CLUSTER=marker)
    cmd = [str(ray), "start", "--head", "--block", "--port", str(port), "--num-cpus", str(cpus),
           "--num-gpus", "0", "--include-dashboard=false", "--node-ip-address", "127.0.0.1",
           "--disable-usage-stats",
           "--object-store-memory", str(200 * 2**20), "--temp-dir", str(folder / "ray")]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    cluster = RayCluster(f"127.0.0.1:{port}", marker, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited: {log.read_text()[-3000:]}")
        if "Ray runtime started" in log.read_text(errors="replace"):
            return cluster
        time.sleep(0.5)
    cluster.stop()
    raise RuntimeError(f"Ray did not start within {timeout} s: {log.read_text()[-3000:]}")
