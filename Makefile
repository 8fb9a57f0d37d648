# The README's two commands: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DATA ?= $(abspath ../shared/data)

.PHONY: demo test test-fast install browser clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/medtorch doctor
	touch $(STAMP)

install: $(STAMP)

# system packages the tests need (Debian's chromium for the report browser test)
browser:
	bash scripts/install-browser.sh

demo: $(STAMP)
	$(BIN)/medtorch demo --out runs/demo

test: browser $(STAMP)
	MEDTORCH_DATA=$(DATA) $(BIN)/python -m pytest

test-fast: browser $(STAMP)
	MEDTORCH_DATA=$(DATA) $(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
