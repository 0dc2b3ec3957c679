"""The Ray that ``--executor ray`` starts on this machine (no ``--ray-address``): on loopback
only, with token authentication, its token made for this process in a private folder, nothing
written to ``~/.ray``; and gone with its driver.

What this relies on in Ray 2.60 (read in the installed package, checked with ``ss -ltnp``):

* Ray takes the node's address from ``services.get_node_ip_address``: with
  ``ray_constants.ENABLE_RAY_CLUSTER`` false (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, what Ray
  does on a laptop OS) that is 127.0.0.1, and gcs_server, the raylet, the workers and the
  runtime-env agent then listen on loopback only. Otherwise it is the machine's network address
  (found by "connecting" a UDP socket to 8.8.8.8) and they listen on every interface.
  ``_node_ip_address="127.0.0.1"`` alone is rewritten to that network address by Ray.
* ``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN_PATH``: every process of the cluster inherits
  the driver's environment and reads the token from that file (without it Ray writes a new one
  to ``~/.ray/auth_token``). Ray caches its config when imported: ``Config.initialize("")``
  refreshes it, as Ray's own ``_enable_token_auth`` does.
* Ray's dashboard process runs its usage-stats module even with the dashboard and usage stats
  off, and that module reads ``~/ray_bootstrap_config.yaml``; when the file is missing it asks
  the cloud metadata services (a DNS lookup of metadata.google.internal, HTTP to
  169.254.169.254) which cloud it runs on. The cluster's processes get the private folder as
  their home, holding an empty bootstrap config, so nothing leaves the machine; ``CACH_CACHE``
  pins this user's cache for them.
* gcs_server and the raylet die with the driver (Ray starts them fate-shared), the workers with
  the raylet; but the runtime-env and dashboard agents, left without their raylet, try to report
  to the dead GCS and were measured alive well after a ``kill -9`` of the driver. So the
  cluster's processes carry ``CACH_RAY_RUN=<id>`` (inherited from the driver), and a small
  reaper process (``ray_reaper.py``: stdlib only, its own session) notes them and their
  descendants while the driver lives, and ends them when the driver closes a pipe or dies.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model_runtime.errors import ConfigError
from model_runtime.paths import cache_dir
from model_runtime.settings import current

LOG = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: seconds before a local Ray that has not started is reported as stalled
START_WARN_S = float(current().ray_start_warn_s)

_token: Path | None = None
_token_lock = threading.Lock()


def token_file() -> Path:
    """This process's Ray token: a random secret in a new ``0700`` folder, file ``0600``,
    removed when the process exits. One per process: Ray's token loader keeps the first token
    it reads for the life of the process."""
    global _token
    with _token_lock:
        if _token is None or not _token.is_file():
            folder = Path(tempfile.mkdtemp(prefix="cach-ray-"))  # mode 0700
            path = folder / "auth_token"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            (folder / "ray_bootstrap_config.yaml").write_text("{}\n")  # see the docstring
            atexit.register(shutil.rmtree, folder, True)
            _token = path
        return _token


def local_environment() -> dict[str, str]:
    """The variables a local cluster's processes need (they inherit the driver's)."""
    token = token_file()
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
            "CACH_CACHE": str(cache_dir(create=False)), "HOME": str(token.parent)}


def check_loopback() -> None:
    """One clear message when this machine's loopback does not carry a connection (a network
    namespace whose ``lo`` is down): a local Ray would wait for its own GCS for ever."""
    try:
        with socket.socket() as server:
            server.bind((LOOPBACK, 0))
            server.listen(1)
            socket.create_connection(server.getsockname(), timeout=5).close()
    except OSError as err:
        raise ConfigError(
            f"A local Ray needs the loopback network (127.0.0.1), which does not accept "
            f"connections here ({err.strerror or err}). Bring the 'lo' interface up (in a "
            "network namespace: ip link set lo up), or use --executor local.",
            code="cluster_unreachable") from err


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` (and ``RAY_AUTH_TOKEN`` out when a token file is given: Ray
    would prefer it), and Ray's import-time view of them, for the block only."""
    keys = [*values, "RAY_AUTH_TOKEN"]
    saved = {k: os.environ.get(k) for k in keys}
    if "RAY_AUTH_TOKEN_PATH" in values:
        os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(values)
    constants = sys.modules.get("ray._private.ray_constants")
    cluster = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    try:
        if constants is not None:  # Ray imported before: it read the variable already
            constants.ENABLE_RAY_CLUSTER = False
        _refresh_ray_config()
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if constants is not None and cluster is not None:
            constants.ENABLE_RAY_CLUSTER = cluster
        _refresh_ray_config()


def is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` (or ``ray://HOST:PORT``) names this machine's loopback."""
    host = address.split("://", 1)[-1].rstrip("/").rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def joining(address: str) -> Iterator[None]:
    """Around joining ``address``: a cluster on loopback is joined on loopback (Ray would
    otherwise rewrite 127.0.0.1 to the machine's network address, where a cluster bound to
    loopback does not listen)."""
    if not is_loopback(address):
        yield
        return
    with _environment({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}):
        yield


def _refresh_ray_config() -> None:
    raylet = sys.modules.get("ray._raylet")
    if raylet is not None:
        raylet.Config.initialize("")


def start_reaper(run_id: str) -> subprocess.Popen:
    """The reaper of the cluster marked ``run_id`` (see the module's docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "CACH_RAY_RUN"}
    script = Path(__file__).with_name("ray_reaper.py")
    return subprocess.Popen([sys.executable, "-I", str(script), run_id, str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def _stop_reaper(reaper: subprocess.Popen) -> None:
    reaper.stdin.close()  # EOF: it ends what the shutdown left
    try:
        reaper.wait(timeout=10)
    except subprocess.TimeoutExpired:
        LOG.warning("the local Ray's reaper (pid %d) is still running", reaper.pid)


@contextmanager
def local_cluster(ray: Any, **init: Any) -> Iterator[None]:
    """A Ray started here for the block: loopback only, token auth, shut down afterwards, and
    nothing of it left when the block ends or the driver dies. A start that takes longer than
    :data:`START_WARN_S` is reported (Ray itself waits silently for a GCS it cannot reach)."""
    check_loopback()
    run_id = uuid.uuid4().hex
    with _environment({**local_environment(), "CACH_RAY_RUN": run_id}):
        reaper = start_reaper(run_id)
        try:
            with _started(ray, init):
                yield
        finally:
            _stop_reaper(reaper)


@contextmanager
def _started(ray: Any, init: dict) -> Iterator[None]:
    timer = threading.Timer(START_WARN_S, LOG.warning, args=(
        "The local Ray has not started after %.0f s: it may be unable to reach its own "
        "processes on 127.0.0.1 (see the Ray logs under /tmp/ray). Still waiting; press "
        "Ctrl-C to stop, or use --executor local.", START_WARN_S))
    timer.daemon = True
    timer.start()
    try:
        ray.init(address="local", _node_ip_address=LOOPBACK, **init)
    finally:
        timer.cancel()
    try:
        yield
    finally:
        ray.shutdown()
