"""The Ray executor on a real local Ray cluster (``raycluster.py``): same tiles and codes as the
local executor, corrupt files skipped and named, resume after a SIGINT to the driver and after a
worker process is killed, a hung actor noticed, an unreachable address and a missing Ray each
one clear message. Every wait is bounded; the Ray cluster is shared by the module.

Most runs use the conftest stand-in model (the executor, Ray, the store and the rasters are
real); ``test_real_model_*`` runs the shipped model through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "token")  # read when ray is imported: join by address
pytest.importorskip("ray", reason="pip install -r requirements/ray.txt")

import raycluster  # noqa: E402  (tests/runtime is on sys.path)
from conftest import FakeEncoder  # noqa: E402

from model_runtime.index.build import BuildOptions, build_index  # noqa: E402
from model_runtime.index.query import open_index  # noqa: E402
from model_runtime.index.ray_executor import RaySettings, build_index_ray  # noqa: E402
from model_runtime.raster.tiling import TilingOptions  # noqa: E402

ROOT = raycluster.ROOT
TILING = TilingOptions(tile_size=128)
OPTIONS = BuildOptions(tiling=TILING, unit_tiles=8, batch_size=4)


@pytest.fixture(scope="module")
def cluster():
    folder = Path(tempfile.mkdtemp(prefix="cachray", dir="/tmp"))  # short: Ray's socket paths
    ray_cluster = raycluster.start(folder)
    yield ray_cluster
    ray_cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def joined(cluster, monkeypatch):
    """This process joins the test cluster as a driver would."""
    for key, value in raycluster.driver_env().items():
        if key.startswith("RAY_"):
            monkeypatch.setenv(key, value)
    return RaySettings(address=cluster.address, stall_s=120)


def rows(index_dir: Path) -> list[tuple]:
    """(source, col, row, width, height, scale, code, floats) of every tile, sorted."""
    with sqlite3.connect(index_dir / "index.sqlite") as db:
        return sorted(db.execute(
            "SELECT s.path, t.col, t.row, t.width, t.height, t.scale, t.code, t.feats "
            "FROM tiles t JOIN sources s ON s.id = t.source_id").fetchall())


def assert_same_index(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert len(ra) == len(rb) and ra == rb
    windows = [r[:6] for r in rb]
    assert len(windows) == len(set(windows)), "a tile is duplicated"


def ray_build(folder, index, joined, **kw):
    return build_index_ray(index, [str(folder)], FakeEncoder().heads, kw.pop("options", OPTIONS),
                           model_factory=FakeEncoder, settings=joined, **kw)


# --------------------------------------------------------------------------- equality


def test_local_and_ray_same_tiles_and_codes_then_incremental(sample_folder, tmp_path, joined,
                                                             geotiff_dir):
    local, ray_dir = tmp_path / "local", tmp_path / "ray"
    build_index(local, [str(sample_folder)], FakeEncoder(), OPTIONS)
    summary = ray_build(sample_folder, ray_dir, joined)
    assert summary.tiles > 40 and summary.encoded == summary.tiles and not summary.skipped
    assert_same_index(local, ray_dir)
    # incremental on Ray: one file changed, one removed, one added
    shutil.copy2(geotiff_dir / "naip/m_4709963_se_14_1_20090818.tif",
                 sample_folder / "rasterio/cogeo.tif")
    (sample_folder / "landsat/dsm.tif").unlink()
    shutil.copy2(geotiff_dir / "naip/m_4709963_se_14_1_20200831.tif", sample_folder / "n.tif")
    again = ray_build(sample_folder, ray_dir, joined)
    assert (again.added, again.updated, again.removed, again.unchanged) == (1, 1, 1, 2)
    clean = tmp_path / "clean"
    build_index(clean, [str(sample_folder)], FakeEncoder(), OPTIONS)
    assert_same_index(clean, ray_dir)
    index = open_index(ray_dir)
    code = np.frombuffer(rows(ray_dir)[0][6], np.uint8)
    assert len(index.search(code, k=5, collapse=False)) == 5
    assert not (ray_dir / "shards").exists()


def test_corrupt_files_skipped_and_named_by_both(sample_folder, tmp_path, joined, geotiff_dir):
    (sample_folder / "broken.tif").write_bytes(b"II*\x00" + os.urandom(5000))
    data = (geotiff_dir / "rasterio/cogeo.tif").read_bytes()
    (sample_folder / "truncated.tif").write_bytes(data[: len(data) // 3])
    local = build_index(tmp_path / "local", [str(sample_folder)], FakeEncoder(), OPTIONS)
    ray_sum = ray_build(sample_folder, tmp_path / "ray", joined)
    for summary in (local, ray_sum):
        named = {Path(s.path).name: s for s in summary.skipped}
        assert {"broken.tif", "truncated.tif"} <= set(named), summary.skipped
        assert all(s.code for s in named.values())
    assert_same_index(tmp_path / "local", tmp_path / "ray")
    assert not any("truncated" in r[0] or "broken" in r[0] for r in rows(tmp_path / "ray"))


# --------------------------------------------------------------------------- faults

DRIVER = r"""
import json, sys, time
from conftest import FakeEncoder
from model_runtime.index.build import BuildOptions
from model_runtime.index.ray_executor import RaySettings, build_index_ray
from model_runtime.raster.tiling import TilingOptions

args = json.loads(sys.argv[1])

class SlowFake(FakeEncoder):
    def _encode_batch(self, batch):
        time.sleep(args["delay"])
        return super()._encode_batch(batch)

opts = BuildOptions(tiling=TilingOptions(tile_size=128), unit_tiles=8, batch_size=4)
settings = RaySettings(address=args["address"], actors=args.get("actors"),
                       stall_s=args.get("stall_s", 120))
summary = build_index_ray(args["index"], [args["folder"]], FakeEncoder().heads, opts,
                          model_factory=SlowFake, settings=settings)
print(json.dumps(summary.to_json()))
"""


def start_driver(cluster, folder, index, env: dict | None = None, **args) -> subprocess.Popen:
    """A driver process indexing ``folder`` on ``cluster`` (None: a local Ray it starts)."""
    spec = {"address": getattr(cluster, "address", None), "index": str(index),
            "folder": str(folder), "delay": 0.4, **args}
    # SIGINT back to its default in the driver: a library loaded earlier in the test process may
    # have set it to "ignore", which a child inherits (and Python then keeps)
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(spec)], cwd=ROOT,
                            env=env or raycluster.driver_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def committed_units(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'index.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM units").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"driver did not stop within {timeout} s: {err[-3000:]}") from None
    return proc.returncode, out, err


def test_sigint_to_driver_then_resume_with_local(cluster, sample_folder, tmp_path, joined):
    index = tmp_path / "idx"
    # slow batches, and the signal after the first committed unit: the run cannot finish first
    proc = start_driver(cluster, sample_folder, index, delay=1.0)
    wait_for(lambda: committed_units(index) >= 1, 240, "a committed unit")
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code != 0 and committed_units(index) >= 1, (code, committed_units(index), err[-2000:])
    done = committed_units(index)
    resumed = build_index(index, [str(sample_folder)], FakeEncoder(), OPTIONS)
    assert resumed.encoded < resumed.tiles, "finished units were encoded again"
    clean = tmp_path / "clean"
    build_index(clean, [str(sample_folder)], FakeEncoder(), OPTIONS)
    assert_same_index(clean, index)
    assert committed_units(index) == committed_units(clean) and done > 0


def test_worker_killed_then_resume_with_ray(cluster, sample_folder, tmp_path, joined):
    index = tmp_path / "idx"
    proc = start_driver(cluster, sample_folder, index, actors=1, stall_s=60)
    wait_for(lambda: committed_units(index) >= 1 and cluster.processes("EncodeUnits"), 240,
             "a committed unit and the encoding actor")
    for pid in cluster.processes("EncodeUnits"):
        os.kill(pid, signal.SIGKILL)
    code, out, err = finish(proc, timeout=300)
    # Ray may replace the actor and finish, or the watchdog stops the run: never a hang
    assert code == 0 or "run the same command again to resume" in err, err[-2000:]
    resumed = ray_build(sample_folder, index, joined)
    clean = tmp_path / "clean"
    build_index(clean, [str(sample_folder)], FakeEncoder(), OPTIONS)
    assert_same_index(clean, index)
    assert resumed.tiles == len(rows(clean))


def test_hung_actor_is_noticed(cluster, sample_folder, tmp_path):
    """A pool of one whose actor stops (SIGSTOP: alive, silent, never replaced) must end the
    run with a clear message after the stall timeout, not wait forever (ray#62746)."""
    index = tmp_path / "idx"
    proc = start_driver(cluster, sample_folder, index, actors=1, stall_s=20)
    wait_for(lambda: committed_units(index) >= 1 and cluster.processes("EncodeUnits"), 240,
             "a committed unit and the encoding actor")
    stopped = cluster.processes("EncodeUnits")
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        code, _, err = finish(proc, timeout=150)
        waited = time.monotonic() - started
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert code != 0 and "made no progress for" in err and "ray#62746" in err, err[-2000:]
    assert waited < 120


def test_crafted_shards_manifest_touches_nothing_outside(sample_folder, tmp_path, joined):
    """issue 16 item 2: manifest lines naming a shard outside the index (a relative path out of
    it, an absolute path), a header naming /etc/passwd, a non-npz and a truncated shard: the Ray
    run loads, commits and deletes none of them, names the bad ones, and finishes complete (on
    61685e6 the outside shard was committed and deleted, and the bad files crashed the run)."""
    from test_ray_shards import _forge, unit_results

    from model_runtime.index.shards import ShardSet, encode_shard, run_identity

    results = unit_results(sample_folder, FakeEncoder())
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("v1.npz", "v2.npz"):
        (victim / name).write_bytes(encode_shard(results[1]))
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    index = tmp_path / "a" / "idx"
    shards = ShardSet(index, run_identity(FakeEncoder().info.to_json(), TILING.to_json())).open()
    key, forged = _forge(results[0], "/etc/passwd", 1234, "1")
    files = {key: forged, "b" * 40: b"not a zip", "c" * 40: encode_shard(results[2])[:300]}
    for name, data in files.items():
        (shards.dir / f"{name}.npz").write_bytes(data)
    lines = [{"key": results[1].unit.key, "file": "../../../victim/v1.npz"},
             {"key": results[1].unit.key, "file": str(victim / "v2.npz")},
             *({"key": name, "file": f"{name}.npz"} for name in files)]
    shards.manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = ray_build(sample_folder, index, joined)
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    assert "/etc/passwd" not in {r[0] for r in rows(index)}
    clean = tmp_path / "clean"
    build_index(clean, [str(sample_folder)], FakeEncoder(), OPTIONS)
    assert_same_index(clean, index)
    assert summary.tiles == len(rows(clean)) and open_index(index) is not None
    assert sorted(p.name for p in shards.dir.iterdir()) == [f"{'b' * 40}.npz",
                                                          f"{'c' * 40}.npz"]


# --------------------------------------------------------------------------- messages


def cach(*args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "model_runtime", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=env or raycluster.driver_env())


def test_unreachable_address_one_clear_message(tmp_path):
    closed = raycluster.free_port()
    started = time.monotonic()
    res = cach("index", str(ROOT / "resources/samples"), "--index", str(tmp_path / "i"),
               "--executor", "ray", "--ray-address", f"127.0.0.1:{closed}", timeout=120)
    assert res.returncode == 1 and time.monotonic() - started < 60
    assert f"Cannot reach the Ray cluster at 127.0.0.1:{closed}" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) <= 2


def test_local_needs_no_ray_and_ray_says_how_to_install(tmp_path, sample_folder):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from conftest import FakeEncoder\n"
        "from model_runtime.index.build import BuildOptions, build_index\n"
        "from model_runtime.index.ray_executor import build_index_ray\n"
        f"s = build_index({str(tmp_path / 'l')!r}, [{str(sample_folder)!r}], FakeEncoder())\n"
        "print('local', s.tiles)\n"
        "try:\n"
        f"    build_index_ray({str(tmp_path / 'r')!r}, [{str(sample_folder)!r}],"
        " FakeEncoder().heads)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e.code, e)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=raycluster.driver_env())
    assert "local " in res.stdout and int(res.stdout.split("local ")[1].split()[0]) > 0
    assert "ConfigError extra_missing" in res.stdout and "requirements/ray.txt" in res.stdout


def test_real_model_local_vs_ray_bit_identical(cluster, tmp_path):
    """The shipped model (default CPU backend) through the CLI: the same tile set and
    bit-identical codes from --executor local and --executor ray."""
    src = ROOT / "resources" / "samples"
    local = cach("index", str(src), "--index", str(tmp_path / "local"), "--json")
    assert local.returncode == 0, local.stderr[-2000:]
    ray_run = cach("index", str(src), "--index", str(tmp_path / "ray"), "--json",
                   "--executor", "ray", "--ray-address", cluster.address, timeout=600)
    assert ray_run.returncode == 0, ray_run.stderr[-2000:]
    a, b = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert [r[:7] for r in a] == [r[:7] for r in b] and len(a) == json.loads(
        local.stdout)["tiles"]


# --------------------------------------------------------------------------- object storage


def by_name(index_dir: Path) -> list[tuple]:
    """rows() keyed by the file name instead of its URI (disk and bucket agree on names)."""
    return sorted((Path(r[0]).name, *r[1:]) for r in rows(index_dir))


def test_s3_prefix_same_codes_as_disk(sample_folder, tmp_path, joined, monkeypatch):
    """The same rasters from a bucket (a real S3 server on loopback) and from disk give the
    same tiles and codes, on Ray and locally. The cluster's workers have no AWS variables of
    their own: the driver passes them."""
    pytest.importorskip("boto3", reason="pip install -r requirements/s3.txt")
    import s3server

    from model_runtime.raster import remote

    server = s3server.start(tmp_path)
    try:
        s3 = server.client()
        for path in sorted(sample_folder.rglob("*.tif")):
            s3.upload_file(str(path), s3server.BUCKET, f"ortho/{path.name}")
        for name in remote.AWS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        prefix = f"s3://{s3server.BUCKET}/ortho"
        ray_sum = ray_build(prefix, tmp_path / "ray", joined)
        build_index(tmp_path / "s3local", [prefix], FakeEncoder(), OPTIONS)
    finally:
        server.stop()
    build_index(tmp_path / "disk", [str(sample_folder)], FakeEncoder(), OPTIONS)
    assert ray_sum.tiles > 40 and not ray_sum.skipped
    assert by_name(tmp_path / "ray") == by_name(tmp_path / "disk")
    assert by_name(tmp_path / "s3local") == by_name(tmp_path / "disk")
    sources = {r[0] for r in rows(tmp_path / "ray")}
    assert all(s.startswith(prefix + "/") for s in sources)
    with sqlite3.connect(tmp_path / "ray" / "index.sqlite") as db:
        stored = " ".join(str(v) for row in db.execute("SELECT * FROM sources") for v in row)
        stored += " ".join(str(v) for row in db.execute("SELECT * FROM meta") for v in row)
    assert server.secret not in stored and server.key not in stored
