#!/usr/bin/env bash
# Create the runtime virtual environment at .venv/ with the pinned requirements, and install
# model_runtime (the `cach` command) into it. Idempotent: re-running with unchanged requirements
# only checks the stamp. Usage: scripts/setup.sh [--with-tests]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${CACH_PYTHON:-python3}"
files=(requirements/runtime.txt)
# the tests also cover the optional extras (Ray executor, object storage) and research/
if [[ "${1:-}" == "--with-tests" ]]; then
  files+=(requirements/test.txt requirements/ray.txt requirements/s3.txt requirements/research.txt)
fi
reqs=()
for f in "${files[@]}"; do reqs+=(-r "$f"); done

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: $PYTHON must be Python >= 3.10 (set CACH_PYTHON to another interpreter)" >&2
  exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.cach-setup-stamp
want=$(cat "${files[@]}" pyproject.toml | sha1sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: .venv is up to date"
  exit 0
fi
echo "setup: installing pinned requirements into .venv (torch is large: this takes a few minutes once)"
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet "${reqs[@]}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, open_clip, faiss, rasterio, onnxruntime, openvino, tokenizers, model_runtime" \
  || { echo "setup: the runtime environment does not import; see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup: done; the runtime is .venv/bin/cach ($(.venv/bin/python -c 'import torch; print("CUDA" if torch.cuda.is_available() else "CPU")'))"
