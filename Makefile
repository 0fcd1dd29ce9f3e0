# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo_output
export NIPYPE_NO_ET := 1

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, from the CPU wheel, so pip does not pull a CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python -m nmflow.demo $(DEMO)

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
