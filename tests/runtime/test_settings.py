"""The CACH_* variables are read in one place (model_runtime/settings.py), with one default each,
documented in one table (docs/settings.md) that matches the Settings fields."""
from __future__ import annotations

import re
from dataclasses import fields

from model_runtime.paths import PLUGIN_ROOT
from model_runtime.settings import Settings, current, variables

RUNTIME = PLUGIN_ROOT / "model_runtime"
DIRECT_READ = re.compile(r"""(environ\.get\(|getenv\(|environ\[)\s*["']CACH_""")


def _table_rows() -> dict[str, tuple[str, str]]:
    text = (PLUGIN_ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(CACH_[A-Z_]+)` \| (.+?) \| (.+?) \|$", text, flags=re.M)
    return {name: (default, doc) for name, default, doc in rows}


def test_the_table_lists_every_setting_with_its_default_and_doc():
    rows = _table_rows()
    assert list(rows) == list(variables())
    for f in fields(Settings):
        default, doc = rows[Settings.variable(f.name)]
        assert default == (f"`{f.default}`" if f.default else "(unset)")
        assert doc == f.metadata["doc"]


def test_no_runtime_module_reads_a_cach_variable_itself():
    readers = [str(p.relative_to(PLUGIN_ROOT)) for p in RUNTIME.rglob("*.py")
               if p.name != "settings.py" and DIRECT_READ.search(p.read_text(encoding="utf-8"))]
    assert readers == []


def test_one_default_each_and_blank_is_unset():
    s = Settings.from_env({"CACH_DEVICE": "  ", "CACH_RAY_CPUS": "", "OTHER": "x"})
    assert s == Settings()
    assert (s.device, s.graph_builder, s.ray_cpus, s.ray_stall_s) == ("auto", "auto", "1", "600")
    assert Settings.from_env({"CACH_DEVICE": " cuda:1 "}).device == "cuda:1"


def test_current_reads_the_environment_at_each_call(monkeypatch):
    monkeypatch.setenv("CACH_DEVICE", "cpu")
    assert current().device == "cpu"
    monkeypatch.setenv("CACH_DEVICE", "cuda")
    assert current().device == "cuda"
    monkeypatch.delenv("CACH_DEVICE")
    assert current().device == "auto"


def test_every_device_reader_takes_the_same_default(monkeypatch):
    """CACH_DEVICE unset means auto everywhere (the compiled engines map auto to the CPU)."""
    from model_runtime.model import factory

    monkeypatch.delenv("CACH_DEVICE", raising=False)
    monkeypatch.setattr(factory, "_cuda_present", lambda: False)
    assert factory.wants_cuda(None) is False
    monkeypatch.setenv("CACH_DEVICE", "cuda")
    assert factory.wants_cuda(None) is True
