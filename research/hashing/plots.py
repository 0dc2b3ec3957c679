"""Figures of the report (matplotlib, Agg backend; matplotlib is a research-only dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_runtime.errors import ConfigError


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ConfigError(
            "matplotlib is missing: install the research requirements with "
            "'.venv/bin/pip install -r requirements/research.txt'."
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_pr_curves(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str
) -> Path:
    """Plot ``{label: (precision, recall)}`` to a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, (p, r) in curves.items():
        ax.plot(r, p, marker=".", label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
