# The two commands of README.md: `make demo` and `make test`.
PYTHON ?= python3
JOBS ?= auto

.PHONY: demo test install bench

install:
	$(PYTHON) -m pip install -q --disable-pip-version-check -e .

demo: install
	./scripts/demo

test:
	PYTHON=$(PYTHON) ./scripts/install-test-deps
	$(PYTHON) -m pytest -n $(JOBS) -p no:cacheprovider tests

bench: install
	for b in bench/*.py; do $(PYTHON) "$$b" || exit 1; done
