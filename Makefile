# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo_output
# PyTorch's CPU wheels (PyTorch's own install instructions); a GPU build: TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
export NIPYPE_NO_ET := 1

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, from the CPU index, so that pip does not pull the CUDA build (gigabytes a CPU never uses)
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0 --extra-index-url $(TORCH_INDEX)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python -m nmflow.demo $(DEMO)

test: install
	$(BIN)/python -m pytest -q --durations=20 tests

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
