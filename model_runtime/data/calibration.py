"""The images int8 calibration reads, as a shipped list (``resources/calibration/``).

``python -m model_runtime.data.calibration`` writes the list from UC Merced's official training
split: ``CALIBRATION_IMAGES`` images spread evenly over it, as paths under the data root. The
runtime reads the list (``model/quantize.py``) without this package; a test checks that the
shipped list is still the one this module makes."""

from __future__ import annotations

import numpy as np

from model_runtime.data.datasets import load_ucm
from model_runtime.fsutil import atomic_path
from model_runtime.paths import data_root

#: where the shipped list lives, one path under the data root a line
LIST_PATH = "resources/calibration/int8-ucm-train.txt"
CALIBRATION_IMAGES = 128


def calibration_files(n: int = CALIBRATION_IMAGES) -> list[str]:
    """``n`` UCM training images (official split), spread evenly, relative to the data root."""
    root = data_root()
    train = [it.image for it in load_ucm().items if it.split("official") == "train" and it.image]
    picks = np.linspace(0, len(train) - 1, min(n, len(train))).round().astype(int)
    return [train[i].resolve().relative_to(root.resolve()).as_posix() for i in picks]


def main() -> None:
    from model_runtime.paths import PLUGIN_ROOT

    with atomic_path(PLUGIN_ROOT / LIST_PATH) as tmp:
        tmp.write_text("\n".join(calibration_files()) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
