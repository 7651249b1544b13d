# The two commands a newcomer runs on a fresh machine (Python 3.11 is all it needs).
#   make demo   sets up .venv and runs the main job (the divergence tour for now)
#   make test   sets up .venv with the test extras and runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
WORKDIR ?= runs

.PHONY: demo test test-fast clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml changes (stamps live inside the venv).
$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[test,experiments]'
	touch $@

$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[experiments]'
	touch $@

demo: $(VENV)/.stamp-demo
	$(PY) -m experiments.main --config=experiments/configs/divergence_tour.py --workdir=$(WORKDIR)/divergence_tour

test: $(VENV)/.stamp-test
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-fast: $(VENV)/.stamp-test
	$(PY) -m pytest -n 2 -q -m "not slow"

clean:
	rm -rf $(VENV) $(WORKDIR) .pytest_cache
