# factoryOS — every target bootstraps .venv itself, so `make test` and `make demo` work
# straight from a clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DURATION ?= 60
# the demo's floor display (fos-dashboard); port 0 picks a free one, fos-sim prints the URL
DASHBOARD ?= 127.0.0.1:0
PYTEST_ARGS ?=
# KEEP=1: after the run, the line and its floor display stay up until Ctrl-C
KEEP ?=

.PHONY: test demo proto proto-check lint bench clean-venv

# editable_mode=compat: a plain path in a .pth file, which mypy follows (setuptools' default
# import hook is invisible to it), so `mypy` of a user's program works from any directory
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test,dev,completion,sim,gateway]' \
		--config-settings editable_mode=compat
	@touch $(STAMP)

test: $(STAMP) proto-check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	@echo "fos-sim prints the floor display's URL (fos-dashboard on $(DASHBOARD)) once it serves"
	$(VENV)/bin/fos-sim --scenario examples/demo.toml --duration $(DURATION) --dashboard $(DASHBOARD) $(if $(KEEP),--hold)

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

proto-check: $(STAMP)
	$(PY) scripts/gen_proto.py --check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench.bench_planner
	$(PY) -m bench.bench_raft
	$(PY) -m bench.bench_trades

clean-venv:
	rm -rf $(VENV)
