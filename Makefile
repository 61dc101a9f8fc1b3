# asymptote: `make install` once, then `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A torch already importable by $(PYTHON) (e.g. a cluster's CUDA build) is reused through
# --system-site-packages; otherwise torch 2.13.0 is installed (a local CPU wheel on CI machines).
HAVE_TORCH := $(shell $(PYTHON) -c "import torch" >/dev/null 2>&1 && echo yes)

.PHONY: install demo test test-extended test-all cluster-up cluster-down clean

install: $(BIN)/asymptote

$(BIN)/asymptote: pyproject.toml
ifeq ($(HAVE_TORCH),yes)
	$(PYTHON) -m venv --system-site-packages $(VENV)
else
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
endif
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/asymptote eval hook install   # `lm_eval --model asymptote` (evals/lm_eval_plugin.py)
	@touch $@

demo: install
	OMP_NUM_THREADS=1 $(BIN)/asymptote demo

# `make test`: everything but the longest end-to-end scenarios (marker `extended`), which
# `make test-extended` runs; CI (.ci/run) runs both.
test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not extended"

test-extended: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m extended

test-all: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

cluster-up: install
	$(BIN)/asymptote cluster up

cluster-down: install
	$(BIN)/asymptote cluster down

clean:
	rm -rf runs .pytest_cache
