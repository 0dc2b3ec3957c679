#!/usr/bin/env bash
# Set up the QGIS side for development and tests:
#   - Debian's QGIS 3.22 (python3-qgis qgis xvfb pyqt5-dev-tools; lrelease, zip and strace for
#     the tests) unless /usr/bin/python3 can already import qgis and the tools are there;
#   - .venv-qgis: a venv over the system Python that sees python3-qgis, with the pinned test
#     tools from requirements/qgis-test.txt (pytest, pytest-qgis, pb_tool);
#   - the compiled Qt resources cach_qgis/resources_rc.py (pyrcc5).
# Usage: scripts/setup_qgis.sh            (run from anywhere; apt needs root or sudo)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=/usr/bin/python3

if "$PY" -c "import qgis.core" >/dev/null 2>&1 && command -v pyrcc5 >/dev/null && command -v xvfb-run >/dev/null && command -v zip >/dev/null && command -v strace >/dev/null && command -v lrelease >/dev/null; then
    echo "QGIS already importable by $PY: skipping apt"
else
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y python3-qgis qgis xvfb pyqt5-dev-tools qttools5-dev-tools zip strace
fi
"$PY" -c "import qgis.core; from qgis.core import Qgis; print('QGIS', Qgis.QGIS_VERSION)"

if [ ! -x .venv-qgis/bin/python ]; then
    "$PY" -m venv --system-site-packages .venv-qgis
fi
.venv-qgis/bin/python -m pip install --disable-pip-version-check -q -r requirements/qgis-test.txt
.venv-qgis/bin/python -c "import pytest_qgis, qgis.core; print('pytest-qgis ready')"

RC=cach_qgis/resources_rc.py
NEW_RC="$(mktemp --suffix=.py)"
pyrcc5 -o "$NEW_RC" resources.qrc
# PyQt5 -> qgis.PyQt so the module also loads under QGIS builds with another binding
sed -i 's/^from PyQt5 import QtCore/from qgis.PyQt import QtCore/' "$NEW_RC"
# pyrcc5 embeds file times and orders files differently from run to run: keep the committed
# module unless the resources it serves differ
rc_digest() {
    "$PY" - "$1" <<'PY'
import hashlib, importlib.util, re, sys
from qgis.PyQt.QtCore import QFile, QIODevice
spec = importlib.util.spec_from_file_location("cach_rc", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
for alias in sorted(re.findall(r'alias="([^"]+)"', open("resources.qrc").read())):
    f = QFile(":/plugins/cach/" + alias)
    f.open(QIODevice.ReadOnly)
    print(alias, hashlib.sha256(bytes(f.readAll())).hexdigest())
PY
}
if [ -f "$RC" ] && [ "$(rc_digest "$RC")" = "$(rc_digest "$NEW_RC")" ]
then
    rm -f "$NEW_RC"
    echo "cach_qgis/resources_rc.py is up to date"
else
    mv "$NEW_RC" "$RC"
    chmod 644 "$RC"
    echo "compiled cach_qgis/resources_rc.py"
fi
echo "done: run the plugin tests with scripts/test_qgis.sh"
