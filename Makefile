# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python scripts/stack.py run

test: $(STAMP)
	$(VENV)/bin/python scripts/stack.py test $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python scripts/stack.py bench $(ARGS)

fuzz: $(STAMP)
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} $(VENV)/bin/python scripts/stack.py test tests/fuzz -q
