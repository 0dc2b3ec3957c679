#!/usr/bin/env bash
# The indexing benchmark on CUDA and on the CPU of the same machine, one markdown table file.
#
#   bench/gpu.sh                 # on a GPU machine: < 8 minutes; writes $OUT (printed at the end)
#   bench/gpu.sh --dry-run       # tiny sizes, CPU only: checks the script runs (CI; auto without CUDA)
#
# The same bench/bench_index_speed.py runs on each device: bare torch forward of the image tower
# (fp16 autocast on CUDA), bare forward of each engine, `cach index` end to end over UCM scenes
# and a GeoTIFF mosaic, and where the time goes. CUDA rows: torch (fp16 autocast, pinned
# double-buffered copies, batch 512) and ONNX Runtime's CUDA provider when onnxruntime-gpu is
# installed. Nothing is downloaded: the GPU machine needs .venv-full (scripts/setup.sh --with-torch) and the data.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${CACH_PYTHON_BENCH:-.venv-full/bin/python}"  # torch: the full extra (scripts/setup.sh --with-torch)
OUT="${OUT:-${TMPDIR:-/tmp}/cach-gpu-bench-$(date +%Y%m%d-%H%M%S).md}"
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    *) echo "usage: bench/gpu.sh [--dry-run]" >&2; exit 2 ;;
  esac
done

CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if [[ "$CUDA" != "1" && "$DRY" == "0" ]]; then
  echo "gpu.sh: no CUDA device here: running the dry run (CPU, tiny sizes)" >&2
  DRY=1
fi
ORT_CUDA=$("$PY" -c 'import onnxruntime as o; print(int("CUDAExecutionProvider" in o.get_available_providers()))' 2>/dev/null || echo 0)

{
  echo "# CACH indexing benchmark: CUDA vs CPU"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs || echo '?')"
  if [[ "$CUDA" == "1" ]]; then
    echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  else
    echo "- GPU: none (dry run: the CUDA rows are skipped)"
  fi
  echo "- ONNX Runtime CUDA provider: $([[ "$ORT_CUDA" == "1" ]] && echo yes || echo 'no (onnxruntime-gpu not installed)')"
} > "$OUT"

if [[ "$DRY" == "1" ]]; then
  SIZES=(--scenes 42 --mosaic 1024 --repeat 1)
  CPU_VARIANTS="onnx"
else
  SIZES=(--scenes 1050 --mosaic 4096 --repeat 3)
  CPU_VARIANTS="onnx,torch"
fi

run() {  # device variants time-limit
  echo -e "\n## $1\n" >> "$OUT"
  timeout "$3" "$PY" bench/bench_index_speed.py --device "$1" --variants "$2" "${SIZES[@]}" \
    --markdown "$OUT" || echo "(the $1 run failed or ran past $3 s; see the log above)" >> "$OUT"
}

if [[ "$DRY" == "0" ]]; then
  CUDA_VARIANTS="torch"
  [[ "$ORT_CUDA" == "1" ]] && CUDA_VARIANTS="torch,onnx"
  run cuda "$CUDA_VARIANTS" 200
  run cpu "$CPU_VARIANTS" 250
else
  run cpu "$CPU_VARIANTS" 600
fi
echo "gpu.sh: wrote $OUT" >&2
cat "$OUT"
