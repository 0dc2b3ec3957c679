"""The Ray that ``--executor ray`` starts on this machine (no ``--ray-address``; issue 16 item 3):

* while a run goes, every listening socket of every process of that cluster (read from
  ``/proc/<pid>/net/tcp{,6}`` through the processes' socket inodes) is on 127.0.0.1 or ::1;
* its token is this run's own, in a private folder (0700, file 0600) outside the home, and
  nothing is written to ``~/.ray`` (the run has an empty home);
* after ``kill -9`` of the driver no process of the cluster (each carries the run's marker in
  its environment) is left after 10 s;
* a real ``cach index --executor ray`` works inside a network namespace that has nothing but
  loopback (``unshare -rn``; where such a namespace cannot be made the test fails, saying so),
  and with loopback down it stops at once with one message instead of hanging.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="pip install -r requirements/ray.txt")

import raycluster  # noqa: E402  (tests/runtime is on sys.path)
from test_ray import committed_units, start_driver, wait_for  # noqa: E402

from model_runtime.paths import cache_dir  # noqa: E402

ROOT = raycluster.ROOT
LO_UP = ("import fcntl, socket, struct\n"
         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         "req = struct.pack('16sH14s', b'lo', 0, b'')\n"
         "flags = struct.unpack('16sH', fcntl.ioctl(s, 0x8913, req)[:18])[1]\n"
         "fcntl.ioctl(s, 0x8914, struct.pack('16sH14s', b'lo', flags | 1, b''))\n")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any Ray setting, with an empty home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(raycluster.HERE)]), **extra}


def marked(marker: str) -> dict[int, str]:
    """pid -> command of every process whose environment carries ``CACH_TEST_RUN=marker``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"CACH_TEST_RUN={marker}".encode() in env:
            found[int(entry)] = cmd[:120]
    return found


def _start(pid: int) -> str | None:
    """A live process's start time (a reused pid is another process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if fields[0] != "Z" else None


def note_family(root: int, seen: dict[int, str]) -> None:
    """Add to ``seen`` (pid -> start time) the descendants of ``root`` and of every process
    already in it: Ray's agents rewrite their title over their environment, so the marker
    alone does not find them, and they outlive their parents."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    todo = [root, *seen]
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in seen and (start := _start(child)) is not None:
                seen[child] = start
                todo.append(child)


def survivors(marker: str, seen: dict[int, str]) -> dict[int, str]:
    """Processes of the run still alive: marked, or noted in its family with the same start."""
    alive = marked(marker)
    for pid, start in seen.items():
        if pid not in alive and _start(pid) == start:
            try:
                alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(
                    b"\0", b" ").decode()[:120]
            except OSError:
                continue
    return alive


def _address(hex_addr: str) -> ipaddress._BaseAddress:
    raw = bytes.fromhex(hex_addr)  # /proc/net/tcp*: 32-bit words in host (little-endian) order
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return []
    out = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addr, port = fields[1].split(":")
                out.append((str(_address(addr)), int(port, 16)))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_local_cluster_loopback_private_token_and_gone_with_its_driver(sample_folder, tmp_path):
    home, marker = tmp_path / "home", uuid.uuid4().hex
    home.mkdir()
    index = tmp_path / "idx"
    env = clean_env(home, CACH_TEST_RUN=marker, CACH_RAY_NUM_CPUS="2")
    proc = start_driver(None, sample_folder, index, address=None, actors=1, delay=0.5, env=env)
    family: dict[int, str] = {}

    def going() -> bool:
        note_family(proc.pid, family)
        return committed_units(index) >= 1 and len(marked(marker)) >= 4

    try:
        wait_for(going, 240, "a committed unit of the local cluster")
        note_family(proc.pid, family)
        procs = survivors(marker, family)
        assert any("Agent" in cmd for cmd in procs.values()), procs  # the family found them
        sockets = {pid: listening(pid) for pid in procs}
        heard = {pid: s for pid, s in sockets.items() if s}
        names = " ".join(procs[p] for p in heard)
        assert len(heard) >= 3 and "gcs_server" in names and "raylet" in names, (procs, sockets)
        wide = {procs[p]: s for p, s in heard.items() if not all(is_loopback(a) for a, _ in s)}
        assert not wide, f"listening beyond loopback: {wide}"
        # the token: this run's, private, outside the home; every process uses it
        raylet = next(p for p in procs if "raylet" in procs[p])
        environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{raylet}/environ").read_bytes()
                       .split(b"\0") if b"=" in v)
        assert environ[b"RAY_AUTH_MODE"] == b"token"
        token = Path(environ[b"RAY_AUTH_TOKEN_PATH"].decode())
        assert token.is_file() and home not in token.parents
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
        # kill -9 the driver: nothing of its cluster may outlive it by more than 10 s
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while (left := survivors(marker, family)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"alive 10 s after the driver was killed: {left}"
        print(f"the local cluster was gone {10 - (deadline - time.monotonic()):.1f} s after "
              "kill -9 of its driver")
        assert not (home / ".ray").exists() and os.listdir(home) == [], os.listdir(home)
        shutil.rmtree(token.parent)  # a killed driver cannot remove its token folder
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in survivors(marker, family):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------- namespace


def _netns_prefix() -> list[str]:
    """``unshare -rn`` (a user and a network namespace: nothing but a loopback interface, as
    root inside); fails the test with the reason when it cannot be made here."""
    if not shutil.which("unshare"):
        pytest.fail("'unshare' (util-linux) is not installed: the network-namespace test "
                    "needs it")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail("cannot make a network namespace here ('unshare -rn true': "
                    f"{probe.stderr.strip()}); user namespaces are needed for this test")
    return ["unshare", "-rn"]


def cach_in_netns(args: list[str], env: dict, lo_up: bool, timeout: float):
    script = ("import runpy, sys\n" + (LO_UP if lo_up else "") +
              "sys.argv = ['cach', *sys.argv[1:]]\n"
              "runpy.run_module('model_runtime', run_name='__main__')\n")
    return subprocess.run([*_netns_prefix(), sys.executable, "-c", script, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_cach_index_on_ray_in_a_namespace_with_only_loopback(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy2(ROOT / "resources" / "samples" / "cogeo.tif", folder)
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home, CACH_CACHE=str(cache_dir()), CACH_RAY_STALL_S="240")
    # loopback down: one message at once, not a wait for ever
    started = time.monotonic()
    down = cach_in_netns(["index", str(folder), "--index", str(tmp_path / "down"),
                          "--executor", "ray"], env, lo_up=False, timeout=120)
    assert down.returncode == 1 and time.monotonic() - started < 90, down.stderr[-2000:]
    assert "loopback" in down.stderr and "Traceback" not in down.stderr, down.stderr[-2000:]
    # loopback up, nothing else: the whole run, with the shipped model
    run = cach_in_netns(["index", str(folder), "--index", str(tmp_path / "idx"), "--executor",
                         "ray", "--json"], env, lo_up=True, timeout=480)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["tiles"] > 0 and summary["encoded"] == summary["tiles"], summary
    assert not summary["skipped"] and os.listdir(home) == [], (summary, os.listdir(home))


# --------------------------------------------------------------------------- nothing leaves


def _outbound(trace: str) -> list[str]:
    """The connect() calls of an strace log that go anywhere but this machine (Unix sockets,
    netlink, loopback): the DNS resolver, a metadata service, the network address."""
    out = []
    for line in trace.splitlines():
        if "connect(" not in line or "AF_UNIX" in line or "AF_NETLINK" in line:
            continue
        host = line.split('inet_addr("', 1)[-1].split('"', 1)[0] if "inet_addr" in line \
            else line.split('inet_pton(AF_INET6, "', 1)[-1].split('"', 1)[0]
        try:
            if is_loopback(host) or ipaddress.ip_address(host).is_unspecified:
                continue
        except ValueError:
            pass
        out.append(line.strip()[:200])
    return out


def test_a_local_ray_run_connects_to_nothing_beyond_this_machine(tmp_path):
    """Every connect() of every process of a ``cach index --executor ray`` run (strace -f) goes
    to a Unix socket or to loopback. On 61685e6 Ray's usage module, which its dashboard process
    runs even with usage stats off, looked up metadata.google.internal through the system's
    DNS resolver and called 169.254.169.254 to learn which cloud it was on."""
    if not shutil.which("strace"):
        pytest.fail("strace is not installed (scripts/setup_qgis.sh installs it with apt)")
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy2(ROOT / "resources" / "samples" / "cogeo.tif", folder)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "connect.log"
    env = clean_env(home, CACH_CACHE=str(cache_dir()), CACH_RAY_STALL_S="240")
    run = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(log),
                          sys.executable, "-m", "model_runtime", "index", str(folder),
                          "--index", str(tmp_path / "idx"), "--executor", "ray"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=480)
    assert run.returncode == 0, run.stderr[-3000:]
    trace = log.read_text(errors="replace")
    assert trace.count("connect(") > 10, trace[-2000:]  # strace did follow the cluster
    outbound = _outbound(trace)
    assert not outbound, "connections beyond this machine:\n" + "\n".join(outbound[:20])
    assert os.listdir(home) == [], os.listdir(home)
