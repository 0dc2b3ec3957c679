#!/usr/bin/env bash
# Screenshots of the real QGIS window under Xvfb: the CACH dock, a query and its result layers.
#   scripts/screenshot.sh            the README's two: docs/img/screenshot.png (a good search,
#                                    imagery under the footprints) and
#                                    docs/img/screenshot-weak-match.png (the weak-match note)
#   scripts/screenshot.sh OUT.png    one, for $CACH_SCREENSHOT_QUERY
# Needs QGIS (scripts/setup_qgis.sh) and the runtime (scripts/setup.sh); builds the demo index of
# resources/samples like scripts/run_qgis_demo.sh, with 128-px tiles unless CACH_DEMO_TILE_SIZE.
# Each shot checks the search's weak_match against what the picture is meant to show.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CACH_QGIS_PROFILES="${CACH_QGIS_PROFILES:-$(mktemp -d)}"
export CACH_DEMO_INDEX="${CACH_DEMO_INDEX:-$(mktemp -d)/demo-index}"
export CACH_DEMO_TILE_SIZE="${CACH_DEMO_TILE_SIZE:-128}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"
scripts/run_qgis_demo.sh --prepare-only
unset QT_QPA_PLATFORM  # a real X display (Xvfb), not offscreen

shoot() {  # shoot OUT QUERY EXPECTED_WEAK(0|1|"")
    export CACH_SCREENSHOT_OUT="$(realpath -m "$1")"
    export CACH_SCREENSHOT_QUERY="$2"
    export CACH_SCREENSHOT_WEAK="$3"
    xvfb-run -a -s "-screen 0 1600x1000x24" \
        qgis --profiles-path "$CACH_QGIS_PROFILES" --profile cach-demo --nologo \
        --noversioncheck --code "${CACH_SCREENSHOT_SCRIPT:-$ROOT/scripts/screenshot.py}"
    test -s "$CACH_SCREENSHOT_OUT"
    echo "screenshot: $CACH_SCREENSHOT_OUT"
}

if [ $# -ge 1 ]; then
    shoot "$1" "${CACH_SCREENSHOT_QUERY:-a forest with trees}" "${CACH_SCREENSHOT_WEAK:-}"
else
    shoot docs/img/screenshot.png "a forest with trees" 0
    shoot docs/img/screenshot-weak-match.png "a harbour with ships" 1
fi
