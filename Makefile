# Set-up and the two jobs. `make conform` and `make test` each build the virtual environment
# first when it is missing or older than pyproject.toml, so either works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch, installed before anything that depends on torch so that pip never
# reaches for a multi-GB CUDA build. On a GPU machine: make TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
# tensorflow-cpu: the same TensorFlow without the CUDA wheels. On a GPU machine: TF_SPEC=tensorflow
TF_SPEC ?= tensorflow-cpu
BIN := $(VENV)/bin

.PHONY: conform test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" "$(TF_SPEC)" jax
	$(BIN)/python -m pip install --quiet -e ".[test]" rich
	touch $@

conform: $(BIN)/.installed
	$(BIN)/mlloss conform

# One pytest process per test file: every XLA computation TensorFlow and JAX compile maps its
# code into the process for good (about 7 memory maps each, never unmapped), and the whole
# suite in one process passed Linux's default limit of 65530 maps and crashed in XLA.
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@failed=""; for f in tests/test_*.py; do \
		echo "== $$f"; $(BIN)/python -m pytest -q "$$f" || failed="$$failed $$f"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi; echo "every test file passed"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
