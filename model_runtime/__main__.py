"""``python -m model_runtime``: the ``cach`` command."""

import sys

from model_runtime.cli import main

if __name__ == "__main__":  # the worker's job process re-imports __main__ under spawn
    sys.exit(main())
