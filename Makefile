# The two commands of the README:
#   make serve   install the serving stack (no torch) into .venv and start the service
#   make test    install everything (training stack, test tools, Chromium) and run all tests
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
HOST      ?= 127.0.0.1
PORT      ?= 8000
PYTEST_ARGS ?=
# pytest-xdist: one test process per CPU ("auto"); files stay whole on one process
# (--dist loadfile), so module-scoped fixtures (a migrated database, a running app) are
# built once per file, and go to the workers in tests/conftest.py's order (slow files first;
# --no-loadscope-reorder keeps it). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
DOCS_ARGS ?=

.PHONY: serve test lint model venv install-serve install-tools install-dev lint-serving \
        test-services docs-figures

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

install-serve: venv
	$(BIN)/pip install -q -e .

# The test tools and the scale-out extras (~200 packages) come in by uv, which downloads and
# compiles in parallel: 18 s against pip's 58 s on 2 cores (docs/DEVELOPERS.md). Its cache
# stays inside .venv. The training stack then comes by pip, which takes the pinned torch
# builds from the machine's local disk (uv would download them).
install-tools: venv
	$(BIN)/pip install -q uv
	UV_CACHE_DIR=$(VENV)/uv-cache $(BIN)/uv pip install -q --python $(BIN)/python \
	    --compile-bytecode -e '.[dev,scale]'

install-dev: install-tools
	$(BIN)/pip install -q -e '.[train,dev,scale]'

# What needs no torch is linted and type-checked while pip installs the training stack;
# `mypy model` after it reuses this run's cache for the rest.
lint-serving: install-tools
	$(BIN)/ruff check .
	$(BIN)/mypy serve nutrition_db

serve: install-serve
	$(BIN)/python -m serve --host $(HOST) --port $(PORT)

# Best effort: Chromium for the browser test, a PostgreSQL database for the
# PostgreSQL half of the service tests. Tests that lack either skip with the reason.
test-services:
	@bash scripts/test-services.sh

# The Python installs, the system services (apt: Chromium) and the torch-free lint wait on
# different things: they run side by side, two at a time.
test:
	@$(MAKE) --no-print-directory -j2 install-dev test-services lint-serving
	$(BIN)/mypy model serve nutrition_db
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	    $(PYTEST_ARGS)

# Re-measure the figures of docs/BENCHMARKS.md and docs/RELIABILITY.md (tens of minutes;
# a quiet machine): scripts/regenerate_docs.py lists the steps. DOCS_ARGS=--dry-run prints them.
docs-figures: install-dev
	$(BIN)/python scripts/regenerate_docs.py $(DOCS_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy model serve nutrition_db

# Reproduce the shipped default model from ../shared/data (tens of minutes on a 2-core CPU);
# the steps are the model card's "Reproduce" section.
SHARED ?= ../shared/data
# The shipped file in two steps (docs/MODEL_CARD.md, Reproduce): the recipe, then its mask head
# trained again on the food inside each container.
model: install-dev
	$(BIN)/python -m model.train --config model/configs/default.yaml
	$(BIN)/python -m model.export --checkpoint var/train/default/checkpoint.pt \
	    --out var/train/default/traylens.onnx --parity-images tests/fixtures/ecustfd/JPEGImages/*.JPG
	$(BIN)/python -m model.train --config model/configs/mask-refined.yaml \
	    --init-from var/train/default/traylens.onnx
	$(BIN)/python -m model.export --checkpoint var/train/mask-refined/checkpoint.pt \
	    --out model/artifacts/traylens.onnx --parity-images tests/fixtures/ecustfd/JPEGImages/*.JPG
	$(BIN)/python -m model.quantize --model model/artifacts/traylens.onnx --out model/artifacts/traylens.int8.onnx \
	    --calib-dir $(SHARED)/images/mealtray/labeled $(SHARED)/images/ecustfd/JPEGImages --per-folder 32
	$(BIN)/python -m model.export --out model/artifacts/traylens.int8.onnx --fit-open-set \
	    --open-set-thresholds borrowed
	for m in traylens traylens.int8; do \
	  $(BIN)/python -m model.evaluate --model model/artifacts/$$m.onnx --out var/eval/$$m && \
	  cp var/eval/$$m/metrics.json model/artifacts/$$m.metrics.json && \
	  cp var/eval/$$m/report.md model/artifacts/$$m.metrics.md && \
	  $(BIN)/python -m model.export --out model/artifacts/$$m.onnx \
	      --record-metrics model/artifacts/$$m.metrics.json || exit 1; \
	done
