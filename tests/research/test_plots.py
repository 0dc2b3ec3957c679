"""The report's PR-curve figure is a real PNG."""

from __future__ import annotations

import numpy as np

from model_runtime.hashing import metrics as M
from research.hashing.plots import save_pr_curves


def test_save_pr_curves_writes_png(tmp_path):
    dist = np.array([[0, 1, 2, 4], [1, 1, 3, 0]])
    rel = np.array([[1, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
    p, r = M.pr_curve_hamming(dist, rel, bits=4)
    png = save_pr_curves({"x": (p, r)}, tmp_path / "pr.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
