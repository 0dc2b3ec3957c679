#!/usr/bin/env bash
# Screenshot of the real QGIS window under Xvfb: the CACH dock, a query and its result layers.
# Output: docs/img/screenshot.png (or $1). Needs QGIS (scripts/setup_qgis.sh) and the runtime
# (scripts/setup.sh); builds the demo index like scripts/run_qgis_demo.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CACH_SCREENSHOT_OUT="$(realpath -m "${1:-docs/img/screenshot.png}")"
export CACH_QGIS_PROFILES="${CACH_QGIS_PROFILES:-$(mktemp -d)}"
export CACH_DEMO_INDEX="${CACH_DEMO_INDEX:-$(mktemp -d)/demo-index}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"
scripts/run_qgis_demo.sh --prepare-only
unset QT_QPA_PLATFORM  # a real X display (Xvfb), not offscreen
xvfb-run -a -s "-screen 0 1600x1000x24" \
    qgis --profiles-path "$CACH_QGIS_PROFILES" --profile cach-demo --nologo --noversioncheck \
    --code "${CACH_SCREENSHOT_SCRIPT:-$ROOT/scripts/screenshot.py}"
test -s "$CACH_SCREENSHOT_OUT"
echo "screenshot: $CACH_SCREENSHOT_OUT"
