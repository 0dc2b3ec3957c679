#!/usr/bin/env bash
# Run the plugin tests in real QGIS, headless (pytest-qgis, Debian python3-qgis via .venv-qgis).
# They drive the real worker with the runtime in .venv (scripts/setup.sh) unless
# CACH_RUNTIME_PYTHON points elsewhere. Extra arguments go to pytest, e.g. -k search -x.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ ! -x .venv-qgis/bin/python ]; then
    echo "no .venv-qgis: run scripts/setup_qgis.sh first" >&2
    exit 2
fi
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
TARGET=tests/plugin
for arg in "$@"; do
    case "$arg" in tests/*) TARGET="" ;; esac  # explicit test paths replace the default
done
exec .venv-qgis/bin/python -m pytest $TARGET -p no:cacheprovider "$@"
