#!/usr/bin/env bash
# The README's main job for local raster search: index the sample rasters bundled in
# resources/samples/, run a text query and a tile query, and write GeoPackage layers and PNG
# contact sheets to out/demo/ (open the .gpkg files in QGIS over the rasters).
#
#   scripts/demo.sh                 # uses .venv/bin/cach (scripts/setup.sh creates it)
#   CACH=cach scripts/demo.sh       # another cach executable
#   QUERY="a road through fields" scripts/demo.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACH="${CACH:-$ROOT/.venv/bin/cach}"
PY="${PY:-$ROOT/.venv/bin/python}"
INDEX="${INDEX:-$ROOT/out/demo-index}"
OUT="${OUT:-$ROOT/out/demo}"
QUERY="${QUERY:-a residential area with houses and roads}"

if [[ ! -x "$CACH" ]]; then
    echo "demo: $CACH not found; run scripts/setup.sh first" >&2
    exit 1
fi
mkdir -p "$OUT"

echo "== 1. index resources/samples -> $INDEX (incremental: a second run re-encodes nothing)"
"$CACH" index resources/samples --index "$INDEX" --dry-run
"$CACH" index resources/samples --index "$INDEX"

echo
echo "== 2. text query: \"$QUERY\""
"$CACH" search --index "$INDEX" --text "$QUERY" --k 8 \
    --json --gpkg "$OUT/text_query.gpkg" --geojson "$OUT/text_query.geojson" \
    --contact-sheet "$OUT/text_query.png" > "$OUT/text_query.json"
"$PY" - "$OUT/text_query.json" <<'PYEOF'
import json, sys
out = json.load(open(sys.argv[1]))
print(f"{len(out['results'])} hits in {out['timing_ms']['total']:.0f} ms "
      f"({out['index']['tiles']} tiles, {out['index']['bits']}-bit codes)")
for h in out["results"]:
    print(f"  #{h['rank']:<2} score {h['score']:.3f}  hamming {h['hamming']:>2}  tile {h['tile_id']:>4}"
          f"  {h['source'].rsplit('/', 1)[-1]} window {h['window']}")
PYEOF

# the tile query starts from the best georeferenced hit of the text query
TILE="$("$PY" -c '
import json, sys
hits = json.load(open(sys.argv[1]))["results"]
print(next((h for h in hits if h["footprint"]), hits[0])["tile_id"])' "$OUT/text_query.json")"

echo
echo "== 3. tile query: tiles that look like tile $TILE"
"$CACH" search --index "$INDEX" --tile "$TILE" --k 8 \
    --gpkg "$OUT/tile_query.gpkg" --contact-sheet "$OUT/tile_query.png"

echo
echo "== 4. captions for tile $TILE (from the caption bank)"
"$CACH" caption --index "$INDEX" --tile "$TILE" --k 5 --similar 0

echo
echo "Results:"
for f in text_query.gpkg text_query.png text_query.geojson text_query.json tile_query.gpkg tile_query.png; do
    echo "  $OUT/$f"
done
echo "Open the .gpkg layers in QGIS together with the rasters in resources/samples/."
