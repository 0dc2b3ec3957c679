"""Index time estimates (issue 20): the model load and a run's overhead are measured apart from
the per-file and per-tile work, which are fitted to recent runs (model_runtime/speed.py)."""

from __future__ import annotations

import pytest

from model_runtime.speed import DEFAULT_FILE_S, RUN_OVERHEAD_S, SpeedLog, fit_costs


def test_fit_recovers_file_and_tile_costs():
    per_file, per_tile = 0.02, 0.005
    runs = [[f, t, f * per_file + t * per_tile] for f, t in ((4, 35), (300, 303), (10, 400))]
    assert fit_costs(runs, 1.0) == pytest.approx((per_file, per_tile), rel=1e-6)


def test_runs_of_one_shape_keep_the_default_file_cost():
    per_file, per_tile = fit_costs([[4, 40, 0.44]], 1.0)
    assert per_file == DEFAULT_FILE_S
    assert per_tile == pytest.approx((0.44 - 4 * DEFAULT_FILE_S) / 40)


def test_a_run_that_loaded_the_model_does_not_slow_later_estimates(tmp_path):
    """The first run of a worker pays the model load (2.4 s here, graphs built): that time is
    remembered as the load, not spread over the tiles (which made the next estimate of a
    small run several times too long)."""
    speed = SpeedLog("b", tmp_path / "speed.json")
    speed.record_run("cpu", tiles=35, seconds=0.4 + 2.4 + 35 * 0.01 + 4 * 0.01, load_s=2.4,
                     files=4)
    speed.record_run("cpu", tiles=303, seconds=0.4 + 303 * 0.01 + 300 * 0.01, files=300)
    assert speed.load_seconds("cpu") == pytest.approx(2.4)
    samples = RUN_OVERHEAD_S + speed.work_seconds("cpu", files=4, tiles=35)
    scenes = RUN_OVERHEAD_S + speed.work_seconds("cpu", files=300, tiles=303)
    assert samples == pytest.approx(0.4 + 0.39, rel=0.05)
    assert scenes == pytest.approx(0.4 + 6.03, rel=0.05)
