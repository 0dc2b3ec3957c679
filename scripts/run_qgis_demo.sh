#!/usr/bin/env bash
# Open QGIS with CACH for QGIS enabled and a demo index of the bundled sample rasters ready.
#
#   scripts/run_qgis_demo.sh                 build the demo index if needed, then start QGIS
#   scripts/run_qgis_demo.sh --prepare-only  only build the index and the QGIS profile
#
# CACH_DEMO_TILE_SIZE sets the tile size in pixels (default 256; the README screenshots use 128,
# which gives the small sample rasters enough tiles of one kind for a confident match).
# It uses a separate QGIS profile ("cach-demo" under $CACH_QGIS_PROFILES, default
# ~/.cache/cach/qgis-profiles) whose plugin folder links to this repository, so your own QGIS
# profile is untouched. The runtime is .venv (scripts/setup.sh) unless CACH_RUNTIME_PYTHON is set.
# Extra arguments are passed to qgis (e.g. --code script.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILES="${CACH_QGIS_PROFILES:-$HOME/.cache/cach/qgis-profiles}"
PROFILE=cach-demo
RUNTIME_PY="${CACH_RUNTIME_PYTHON:-$ROOT/.venv/bin/python}"
INDEX="${CACH_DEMO_INDEX:-$HOME/.cache/cach/demo-index}"
SAMPLES="${CACH_DEMO_SAMPLES:-$ROOT/resources/samples}"
TILE_SIZE="${CACH_DEMO_TILE_SIZE:-256}"
PREPARE_ONLY=0
if [ "${1:-}" = "--prepare-only" ]; then PREPARE_ONLY=1; shift; fi

if [ ! -x "$RUNTIME_PY" ]; then
    echo "runtime Python $RUNTIME_PY not found: run scripts/setup.sh first" >&2
    exit 2
fi
if ! ls "$SAMPLES"/*.tif >/dev/null 2>&1 && ! ls "$SAMPLES"/*/*.tif >/dev/null 2>&1; then
    echo "no sample rasters in $SAMPLES (set CACH_DEMO_SAMPLES to a folder of GeoTIFFs)" >&2
    exit 2
fi

# 1. the demo index, built through the worker protocol (docs/protocol.md); incremental
echo "demo index: $INDEX (samples: $SAMPLES)"
(cd "$ROOT" && "$RUNTIME_PY" - "$INDEX" "$SAMPLES" "$TILE_SIZE" ${CACH_WORKER_ARGS:-} <<'PY'
import json, subprocess, sys
index, samples, tile_size, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
proc = subprocess.Popen([sys.executable, "-m", "model_runtime", "serve", "--stdio", *extra],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def send(obj):
    proc.stdin.write(json.dumps(obj) + "\n"); proc.stdin.flush()
def run_index(rid, rebuild):
    params = {"index": index, "paths": [samples], "rebuild": rebuild, "tile_size": tile_size}
    send({"id": rid, "op": "index", "params": params})
    for line in proc.stdout:
        msg = json.loads(line)
        if msg.get("event") == "progress":
            d = msg["data"]
            print(f"  {d.get('stage')}: {d.get('done')}/{d.get('total')} {d.get('message')}", flush=True)
        elif msg.get("id") == rid:
            return msg
    sys.exit("the worker stopped")
msg = run_index(1, False)
if not msg["ok"] and msg["error"].get("code") in ("model_mismatch", "index_needs_rebuild"):
    print("  rebuilding:", msg["error"]["message"])
    msg = run_index(2, True)
if not msg["ok"]:
    sys.exit(f"indexing failed: {msg['error']['message']}")
print("  index ready:", json.dumps(msg["result"]))
send({"id": 3, "op": "shutdown"}); proc.wait(timeout=60)
PY
)

# 2. a QGIS profile with the plugin enabled and pointed at the runtime and the index
PDIR="$PROFILES/profiles/$PROFILE"
mkdir -p "$PDIR/python/plugins" "$PDIR/QGIS"
ln -sfn "$ROOT" "$PDIR/python/plugins/cach_for_qgis"
INI="$PDIR/QGIS/QGIS3.ini"
"$RUNTIME_PY" - "$INI" "$RUNTIME_PY" "$INDEX" <<'PY'
import configparser, sys
ini, runtime, index = sys.argv[1:4]
cfg = configparser.ConfigParser(interpolation=None)
cfg.optionxform = str
cfg.read(ini)
def put(section, key, value):
    if not cfg.has_section(section):
        cfg.add_section(section)
    cfg.set(section, key, value)
put("PythonPlugins", "cach_for_qgis", "true")
put("cach", "runtime_python", runtime)
put("cach", "index_path", index)
put("cach", "recent_indexes", index)
put("qgis", "showTips", "false")
put("qgis", "checkVersion", "false")
put("qgis", "allowVersionCheck", "false")
put("core", "NewsFeed\\httpsfeedqgisorg\\disabled", "true")
put("UI", "UI\\showTips322", "false")
put("Projections", "showDatumTransformDialog", "false")
with open(ini, "w") as fh:
    cfg.write(fh, space_around_delimiters=False)
PY
echo "QGIS profile: $PDIR (plugin -> $ROOT)"
[ "$PREPARE_ONLY" = 1 ] && exit 0

exec qgis --profiles-path "$PROFILES" --profile "$PROFILE" --nologo --noversioncheck "$@"
