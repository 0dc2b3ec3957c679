# The two commands of the README. Both work on a fresh machine.
#   make demo   set up the lean runtime .venv (no torch), evaluate the shipped model on UCM, index
#               the bundled sample rasters and search them (results in out/demo/)
#   make test   set up .venv, .venv-full (the torch extra) and QGIS; run the whole test suite:
#               runtime and end-to-end in the lean .venv, the tests marked `torch` in .venv-full,
#               the QGIS plugin in real QGIS against the lean .venv
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c
PYTEST := -q -p no:cacheprovider

.PHONY: setup setup-full setup-tests setup-qgis check-lean demo eval test test-fast test-runtime test-full \
	test-qgis results bench zip lint i18n

setup:
	scripts/setup.sh

setup-full:
	scripts/setup.sh --with-torch

setup-tests:
	scripts/setup.sh --with-tests
	scripts/setup.sh --with-torch --with-tests

setup-qgis:
	scripts/setup_qgis.sh

# the runtime the plugin and `make demo` install, built afresh beside the test environments: no
# torch, nvidia or triton package and at most 700 MB (scripts/setup.sh fails otherwise)
check-lean:
	dir=$$(mktemp -d "$${TMPDIR:-/tmp}/cach-lean.XXXXXX")
	trap 'rm -rf "$$dir"' EXIT
	scripts/setup.sh --venv "$$dir/.venv"

eval: setup
	.venv/bin/cach eval --dataset ucm

demo: setup
	.venv/bin/cach eval --dataset ucm
	scripts/demo.sh

# seconds, in any Python with pytest and numpy (no rasterio, ONNX Runtime or model package needed):
# the stdlib/unit modules that tests/runtime/conftest.py lists in FAST
test-fast:
	$${PYTHON:-.venv/bin/python} -m pytest -m fast tests/runtime $(PYTEST)

test: setup-tests setup-qgis check-lean
	.venv/bin/python -m pytest -m "not torch" tests/runtime tests/e2e $(PYTEST)
	.venv-full/bin/python -m pytest -m torch tests/runtime tests/e2e tests/research $(PYTEST)
	scripts/test_qgis.sh
	CACH_PYTHON_BENCH=.venv-full/bin/python bench/gpu.sh --dry-run

test-runtime: setup-tests
	.venv/bin/python -m pytest -m "not torch" tests/runtime tests/e2e $(PYTEST)

test-full: setup-tests
	.venv-full/bin/python -m pytest -m torch tests/runtime tests/e2e tests/research $(PYTEST)

test-qgis: setup-qgis
	scripts/test_qgis.sh

results: setup-full
	.venv-full/bin/cach results

bench: setup-full
	.venv-full/bin/python bench/bench_search.py
	.venv-full/bin/python bench/bench_e2e.py
	.venv-full/bin/python bench/bench_features.py

lint: setup-tests
	.venv/bin/ruff check model_runtime cach_qgis tests bench scripts

# the translation template: every string the plugin wraps in tr()/translate() (pylupdate5 from
# pyqt5-dev-tools, which scripts/setup_qgis.sh installs); translators copy it to i18n/cach_<lang>.ts
# and lrelease makes the cach_<lang>.qm the plugin loads for QGIS's locale
i18n:
	pylupdate5 -noobsolete $$(git ls-files 'cach_qgis/*.py' | grep -v resources_rc) -ts i18n/cach.ts

# unattended: asks nothing and deploys into no QGIS profile (pb_tool zip did both)
zip:
	python3 scripts/make_zip.py
