#!/usr/bin/env bash
# The README's main job for local raster search: index the sample rasters bundled in
# resources/samples/, run a text query and a tile query, and write GeoPackage layers and PNG
# contact sheets to out/demo/ (open the .gpkg files in QGIS over the rasters).
#
#   scripts/demo.sh                 # uses .venv/bin/cach (scripts/setup.sh creates it)
#   CACH=cach scripts/demo.sh       # another cach executable
#   QUERY="a river" scripts/demo.sh   # another text query (the summary says how well it matched)
#
# The sample rasters hold a snowy, forested mountainside with a road (cogeo.tif), farmland with
# ponds (NAIP) and a meandering river in fields (Landsat). The default query asks for what the
# shipped model finds best in them: 128-px tiles of dense forest. The summary line says what the
# search knows: a weak match, hits likely to show the query, or (on imagery unlike what the
# weak-match rule was calibrated on, as these samples are) that confidence cannot tell and stays
# near the base rate, so the contact sheet is the judge.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACH="${CACH:-$ROOT/.venv/bin/cach}"
PY="${PY:-$ROOT/.venv/bin/python}"
INDEX="${INDEX:-$ROOT/out/demo-index}"
OUT="${OUT:-$ROOT/out/demo}"
QUERY="${QUERY:-dense forest on a mountain}"
TILE_SIZE="${TILE_SIZE:-128}"

if [[ ! -x "$CACH" ]]; then
    echo "demo: $CACH not found; run scripts/setup.sh first" >&2
    exit 1
fi
mkdir -p "$OUT"

echo "== 1. index resources/samples -> $INDEX ($TILE_SIZE-px tiles; a second run re-encodes nothing)"
"$CACH" index resources/samples --index "$INDEX" --tile-size "$TILE_SIZE" --dry-run
# --yes: an index left by an older demo with other tiles is re-tiled without a prompt
"$CACH" index resources/samples --index "$INDEX" --tile-size "$TILE_SIZE" --yes

echo
echo "== 2. text query: \"$QUERY\""
"$CACH" search --index "$INDEX" --text "$QUERY" --k 8 \
    --json --gpkg "$OUT/text_query.gpkg" --geojson "$OUT/text_query.geojson" \
    --contact-sheet "$OUT/text_query.png" > "$OUT/text_query.json"
"$PY" - "$OUT/text_query.json" <<'PYEOF'
import json, sys
out = json.load(open(sys.argv[1]))
hits = out["results"]
print(f"{len(hits)} hits in {out['timing_ms']['total']:.0f} ms "
      f"({out['index']['tiles']} tiles, {out['index']['bits']}-bit codes)")
for h in hits:
    print(f"  #{h['rank']:<2} confidence {h['confidence']:.2f}  score {h['score']:.3f}  "
          f"hamming {h['hamming']:>2}  tile {h['tile_id']:>4}  {h['source'].rsplit('/', 1)[-1]} "
          f"window {h['window']}")
likely = [h for h in hits if h["confidence"] >= 0.5]
best = max((h["confidence"] for h in hits), default=0.0)
if out.get("weak_match"):
    print(f"weak match: even the best hits are unlikely to show this (best confidence {best:.2f}); "
          "the samples may hold nothing like it.")
elif likely:
    print(f"{len(likely)} of {len(hits)} hits likely show it (confidence >= 0.5; best {best:.2f}); "
          "the rest are the nearest other tiles.")
else:
    print(f"not a weak match, but no hit reaches confidence 0.5 (best {best:.2f}): on imagery "
          "unlike the calibration sets the confidence stays near its base rate; judge the hits "
          "on the contact sheet.")
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
