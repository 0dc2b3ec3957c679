"""What a new user meets, run as the real ``cach`` command with an empty home (issue 15):
quiet default output, one version, a help text for users, a missing folder refused, a read-only
index that searches, GeoPackages that pass GDAL's validator, nothing written under the home.

The read-only index is made read-only for real. Root ignores permission bits, so as root the
commands run inside a private mount namespace where the index folder is bind-mounted read-only
(``unshare -rm`` + ``mount --bind -o ro``: EROFS, as on a read-only share or DVD); as another user
``chmod -R a-w`` is enough (EACCES)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_runtime import __version__
from model_runtime.paths import HEADS_DIR, PLUGIN_ROOT, SAMPLES_DIR

CACH = [sys.executable, "-m", "model_runtime"]
SHIPPED = HEADS_DIR / "cach-effnetlite0-minilm-64.safetensors"
VALIDATOR = Path(__file__).parents[1] / "vendor" / "validate_gpkg.py"
BAR = re.compile(r"\d+%\||it/s|tile/s|\r")

pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"shipped heads missing: {SHIPPED}")


def cach(*args, env: dict, ok: bool = True, wrap: list[str] | None = None,
         ) -> subprocess.CompletedProcess:
    argv = [*(wrap or []), *CACH, *map(str, args)]
    proc = subprocess.run(argv, cwd=PLUGIN_ROOT, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    if ok:
        assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def env(tmp_path_factory, home) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("XDG_", "ORT_", "CACH_")) and k != "HOME"}
    return {**base, "HOME": str(home), "CACH_CACHE": str(cache), "CACH_DEVICE": "cpu"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, env) -> tuple[Path, subprocess.CompletedProcess]:
    """An index of the sample rasters, built with stderr going to a file (not a terminal)."""
    samples = tmp_path_factory.mktemp("samples")
    for path in SAMPLES_DIR.glob("*.tif"):
        shutil.copy2(path, samples / path.name)
    index = tmp_path_factory.mktemp("idx") / "index"
    return index, cach("index", samples, "--index", index, env=env)


# --- output, version, help ------------------------------------------------------------------------
def test_index_output_without_a_terminal_has_no_info_logs_and_no_bars(built):
    _, proc = built
    assert "INFO" not in proc.stderr, proc.stderr
    assert not BAR.search(proc.stderr), f"a progress bar went into a log:\n{proc.stderr!r}"
    assert "tiles" in proc.stdout  # the summary itself stays


def test_quiet_prints_nothing_on_stderr(built, env):
    index, _ = built
    proc = cach("-q", "search", "--index", index, "--text", "a river", "--k", "3", env=env)
    assert proc.stderr == "" and "rank" in proc.stdout


@pytest.mark.parametrize(("argv", "level"), [
    (["search", "--index", "x", "--text", "t"], "WARNING"),
    (["-v", "search", "--index", "x", "--text", "t"], "INFO"),
    (["-vv", "search", "--index", "x", "--text", "t"], "DEBUG"),
    (["-q", "search", "--index", "x", "--text", "t"], "ERROR"),
    # the worker's stderr is the plugin's CACH log panel: it keeps its INFO lines
    (["serve", "--stdio"], "INFO"),
])
def test_log_levels(argv, level):
    import logging

    from model_runtime.cli import build_parser, log_level

    args = build_parser(load=argv[1] if argv[0].startswith("-") else argv[0]).parse_args(argv)
    assert logging.getLevelName(log_level(args)) == level


def test_dry_run_counts_the_first_graph_build(built, env, tmp_path):
    fresh = {**env, "CACH_CACHE": str(tmp_path / "empty-cache")}
    first = cach("index", SAMPLES_DIR, "--index", tmp_path / "a", "--dry-run", env=fresh)
    assert "once, to build the model graphs" in first.stdout, first.stdout
    # the module's index was built with env's cache: its graphs are there now
    again = cach("index", SAMPLES_DIR, "--index", tmp_path / "b", "--dry-run", env=env)
    assert "build the model graphs" not in again.stdout, again.stdout
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_one_version_everywhere(tmp_path):
    proc = subprocess.run([*CACH, "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"cach {__version__}"
    plugin = re.search(r"^version=(.+)$", (PLUGIN_ROOT / "metadata.txt").read_text(), re.M)
    assert plugin and plugin.group(1).strip() == __version__, "metadata.txt version"
    project = (PLUGIN_ROOT / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    table = project.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", table, re.M), "pyproject must not repeat the version"
    assert re.search(r'^dynamic = \["version"\]$', project, re.M)
    assert re.search(r'^version = \{ ?attr = "model_runtime.__version__" ?\}$', project, re.M)
    # the package metadata pip would install, and no license deprecation warning on the way
    code = ("import sys, warnings; warnings.simplefilter('always');"
            "from setuptools import build_meta;"
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    built = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=PLUGIN_ROOT,
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    assert "license" not in built.stderr.lower(), built.stderr
    meta = (tmp_path / built.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert f"\nVersion: {__version__}\n" in meta


def test_help_is_written_for_users():
    proc = subprocess.run([*CACH, "--help"], capture_output=True, text=True, check=True)
    assert "``" not in proc.stdout and "Only" not in proc.stdout, proc.stdout
    for words in ("raster", "cach index", "cach search", "--quiet", "examples:"):
        assert words in proc.stdout


def test_no_message_names_a_checkpoint_flag_that_does_not_exist():
    from model_runtime.cli import COMMANDS, build_parser

    options: set[str] = set()
    for name in COMMANDS:
        sub = build_parser(load=name)._subparsers._group_actions[0].choices[name]
        options |= {o for action in sub._actions for o in action.option_strings}
    texts = [PLUGIN_ROOT / "README.md", PLUGIN_ROOT / "model_runtime" / "encoders.py",
             *(PLUGIN_ROOT / "docs").glob("*.md")]
    for path in texts:
        if "--checkpoint" in path.read_text(encoding="utf-8"):
            assert "--checkpoint" in options, f"{path.name} tells users to pass --checkpoint"


def test_demo_shows_the_forest_and_says_honestly_how_sure_it_is(built, env, tmp_path):
    cach_bin = Path(sys.executable).with_name("cach")
    if not cach_bin.is_file():
        pytest.skip(f"{cach_bin} missing: scripts/setup.sh installs the cach command")
    demo_env = {**env, "CACH": str(cach_bin), "PY": sys.executable,
                "INDEX": str(tmp_path / "demo-index"), "OUT": str(tmp_path / "demo")}
    proc = subprocess.run(["bash", str(PLUGIN_ROOT / "scripts" / "demo.sh")], cwd=PLUGIN_ROOT,
                          env=demo_env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert "INFO" not in logs and not BAR.search(logs), logs[-3000:]
    out = json.loads((tmp_path / "demo" / "text_query.json").read_text())
    hits = out["results"]
    assert out["weak_match"] is False, "the demo's own query must be one the samples answer"
    # the forested mountainside is cogeo.tif: the best hits come from it
    assert all(h["source"].endswith("cogeo.tif") for h in hits[:3]), [h["source"] for h in hits]
    conf = [h["confidence"] for h in hits]
    assert conf == sorted(conf, reverse=True), conf
    # the summary line says what the JSON says, whichever case it is
    likely = sum(c >= 0.5 for c in conf)
    if likely:
        assert f"{likely} of {len(hits)} hits likely show it" in proc.stdout, proc.stdout
    else:
        assert f"no hit reaches confidence 0.5 (best {max(conf):.2f})" in proc.stdout, proc.stdout
    assert "weak match:" not in proc.stdout


# --- a missing folder -----------------------------------------------------------------------------
def test_indexing_a_missing_folder_fails_and_creates_nothing(tmp_path, env):
    index = tmp_path / "new-index"
    proc = cach("index", tmp_path / "nonexistent", "--index", index, env=env, ok=False)
    assert proc.returncode != 0
    assert "nonexistent" in proc.stderr and "no such file or folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not index.exists(), "nothing may be created for a path that does not exist"


# --- a read-only index ----------------------------------------------------------------------------
def _readonly_wrapper(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` cannot be written (see the module docstring)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        return []
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
        if probe.returncode == 0:
            mount = f'mount --bind -o ro "{folder}" "{folder}" && exec "$@"'
            return ["unshare", "-rm", "sh", "-c", mount, "sh"]
    pytest.skip("as root this needs 'unshare -rm' (user and mount namespaces) to make a "
                "read-only mount")


@pytest.fixture(scope="module")
def readonly(built, tmp_path_factory) -> tuple[Path, list[str]]:
    """A copy of the built index (cleanly closed: no -wal/-shm), read-only, and its faiss file
    removed, so searching must also rebuild the code index in memory without writing."""
    index, _ = built
    copy = tmp_path_factory.mktemp("ro") / "index"
    shutil.copytree(index, copy)
    assert not list(copy.glob("*-wal")) and not list(copy.glob("*-shm"))
    for faiss_file in copy.glob("*.faiss"):
        faiss_file.unlink()
    yield copy, _readonly_wrapper(copy)
    subprocess.run(["chmod", "-R", "u+w", str(copy)], check=False)


def test_a_readonly_index_searches(readonly, env):
    folder, wrap = readonly
    before = sorted(p.name for p in folder.iterdir())
    proc = cach("search", "--index", folder, "--text", "a river", "--k", "3", "--json",
                env=env, wrap=wrap)
    assert json.loads(proc.stdout)["results"], proc.stdout
    assert "damaged" not in proc.stderr and "ebuild" not in proc.stderr, proc.stderr
    assert "cannot cache" not in proc.stderr, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("command", [["index", str(SAMPLES_DIR)], ["adapt"]])
def test_writing_a_readonly_index_says_it_is_readonly(readonly, env, command):
    folder, wrap = readonly
    name, *rest = command
    proc = cach(name, *rest, "--index", folder, env=env, wrap=wrap, ok=False)
    assert proc.returncode == 1, proc.stderr
    assert "read-only" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr, proc.stderr
    assert "ebuild" not in proc.stderr, "never advise a rebuild for a permission problem"


# --- exports --------------------------------------------------------------------------------------
def _validator():
    spec = importlib.util.spec_from_file_location("validate_gpkg", VALIDATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpkg_passes_gdals_validator(built, env, tmp_path):
    index, _ = built
    out = tmp_path / "hits.gpkg"
    cach("search", "--index", index, "--text", "fields and roads", "--k", "40",
         "--gpkg", out, env=env)
    errors = _validator().check(str(out), abort_at_first_error=False, extra_checks=True,
                                warning_msg=False)
    assert errors == [], errors


# --- the home directory ---------------------------------------------------------------------------
def test_nothing_is_written_under_the_home(built, env, home):
    index, _ = built
    cach("search", "--index", index, "--text", "a road", "--k", "3", env=env)
    assert not (home / ".cache" / "Microsoft").exists(), "ONNX Runtime telemetry id written"
    assert list(home.rglob("*")) == [], list(home.rglob("*"))
