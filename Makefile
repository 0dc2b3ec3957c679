# The two commands of the README. Both work on a fresh machine.
#   make demo   set up .venv, evaluate the shipped model on UCM, index the bundled sample rasters
#               and search them (results in out/demo/)
#   make test   set up .venv and QGIS, run the whole test suite (runtime, end-to-end, QGIS plugin)
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

.PHONY: setup setup-tests setup-qgis demo eval test test-runtime test-qgis results bench zip lint

setup:
	scripts/setup.sh

setup-tests:
	scripts/setup.sh --with-tests

setup-qgis:
	scripts/setup_qgis.sh

eval: setup
	.venv/bin/cach eval --dataset ucm

demo: setup
	.venv/bin/cach eval --dataset ucm
	scripts/demo.sh

test: setup-tests setup-qgis
	.venv/bin/python -m pytest tests/runtime tests/e2e tests/research -q -p no:cacheprovider
	scripts/test_qgis.sh
	bench/gpu.sh --dry-run

test-runtime: setup-tests
	.venv/bin/python -m pytest tests/runtime tests/e2e tests/research -q -p no:cacheprovider

test-qgis: setup-qgis
	scripts/test_qgis.sh

results: setup
	.venv/bin/python -m pip install --quiet -r requirements/research.txt
	.venv/bin/cach results

bench: setup
	.venv/bin/python bench/bench_search.py
	.venv/bin/python bench/bench_e2e.py
	.venv/bin/python bench/bench_features.py

lint: setup-tests
	.venv/bin/ruff check model_runtime cach_qgis tests bench scripts

# unattended: asks nothing and deploys into no QGIS profile (pb_tool zip did both)
zip:
	python3 scripts/make_zip.py
