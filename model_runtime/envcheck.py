"""What a runtime environment holds: the lean runtime's promise (no torch, CUDA or triton) and
its size on disk. ``python -m model_runtime.envcheck --lean`` exits 1 naming any package that
breaks the promise (scripts/setup.sh runs it after every lean setup). Standard library only."""

from __future__ import annotations

import argparse
import os
import re
import sys
from importlib import metadata
from pathlib import Path

#: distributions the lean runtime must never hold (the full extra, .venv-full, has them)
HEAVY = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia[-_].*|open[-_]clip[-_]torch|"
                   r"sentence[-_]transformers|transformers|timm)$", re.IGNORECASE)
#: the lean runtime's budget on disk
LEAN_MAX_MB = 700


def heavy_packages() -> list[str]:
    """Installed distributions of this interpreter that do not belong in the lean runtime."""
    names = {(d.metadata["Name"] or "") for d in metadata.distributions()}
    return sorted(n for n in names if HEAVY.match(n))


def torch_available() -> bool:
    """True when PyTorch can be imported here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def size_mb(folder: str | os.PathLike) -> float:
    """Bytes on disk under ``folder`` (files, not following links), in MB."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_runtime.envcheck")
    parser.add_argument("--lean", action="store_true",
                        help="fail when torch, nvidia-* or triton packages are installed")
    parser.add_argument("--max-mb", type=float, help="fail when the environment is larger")
    args = parser.parse_args(argv)
    heavy = heavy_packages()
    mb = size_mb(Path(sys.prefix))
    print(f"envcheck: {sys.prefix}: {mb:.0f} MB on disk; heavy packages: {', '.join(heavy) or 'none'}")
    if args.lean and heavy:
        print(f"envcheck: the lean runtime must not hold {', '.join(heavy)} (those belong in "
              ".venv-full: scripts/setup.sh --with-torch). An environment made before the lean "
              f"runtime holds them: move {sys.prefix} away and run scripts/setup.sh again.",
              file=sys.stderr)
        return 1
    if args.max_mb is not None and mb > args.max_mb:
        print(f"envcheck: {mb:.0f} MB is over the {args.max_mb:.0f} MB budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
