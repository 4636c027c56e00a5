PY ?= .venv/bin/python

.PHONY: install test test-all check format bench
install:
	python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 && .venv/bin/pip install -q -e ".[test]"
test:
	$(PY) -m pytest
test-all:
	$(PY) -m pytest -m ""
check:
	$(PY) -m ruff check src tests benchmarks examples scripts
	$(PY) -m ruff format --check src tests benchmarks examples scripts
format:
	$(PY) -m ruff format src tests benchmarks examples scripts
	$(PY) -m ruff check --fix src tests benchmarks examples scripts
bench:
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done
