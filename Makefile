# The two commands a newcomer runs on a fresh machine (Python 3.11 is all it needs).
#   make demo   sets up .venv and runs the main job: ~10 paper claims reproduced in
#               miniature, written up in results/REPORT.md
#   make test   sets up .venv with the test extras and runs the test suite
#               (all but the tests marked slow and the notebook runs; `make
#               test-all` runs everything, `make notebooks` the notebooks)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
WORKDIR ?= runs

.PHONY: demo reproduce-all test test-all notebooks docs papers aot-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml changes (stamps live inside the venv).
$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[test,experiments,docs]'
	touch $@

$(VENV)/.stamp-docs: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[docs]'
	touch $@

$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PIP) install -q -e '.[experiments]'
	touch $@

demo: $(VENV)/.stamp-demo
	$(PY) -m experiments.reproduce --preset=demo --workdir=$(WORKDIR)/reproduce

# Every experiment's full variant (resumes finished ones; records
# experiments/RESULTS.json). Hours on 2 cores.
reproduce-all: $(VENV)/.stamp-demo
	$(PY) -m experiments.reproduce --preset=all --workdir=$(WORKDIR)/reproduce

test: $(VENV)/.stamp-test
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "not slow and not notebooks"

# Execute every Colab notebook offline on CPU (CI runs this after `make test`).
notebooks: $(VENV)/.stamp-test
	$(PY) -m pytest tests/colab -n 2 --dist loadgroup -q -m notebooks

test-all: $(VENV)/.stamp-test
	$(PY) -m pytest -n 2 --dist loadgroup -q

# The docs site from the docstrings (fails on any Sphinx warning); the same
# build runs in `make test` (tests/docs/docs_build_test.py).
docs: $(VENV)/.stamp-docs
	$(PY) -m sphinx -W --keep-going -b html docs $(WORKDIR)/docs

# Regenerate PAPERS.md (catalog paper -> functions, tests, experiments);
# `make test` fails while it is stale.
papers: $(VENV)/.stamp-test
	$(PY) tools/papers_md.py

# Deviceless AOT compile of every Pallas kernel for TPU v5e/v6e (libtpu) and
# H100 (CUDA plugin), each in its own virtualenv (PLATFORM.md §3b). No
# accelerator needed; fails when any kernel does not compile.
AOT_TPU := .venv-aot-tpu
AOT_GPU := .venv-aot-gpu

$(AOT_TPU)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(AOT_TPU)
	$(AOT_TPU)/bin/pip install -q -e '.[aot-tpu]'
	touch $@

$(AOT_GPU)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(AOT_GPU)
	$(AOT_GPU)/bin/pip install -q -e '.[aot-gpu]'
	touch $@

aot-check: $(AOT_TPU)/.stamp $(AOT_GPU)/.stamp
	mkdir -p $(WORKDIR)
	PYTHONPATH=. $(AOT_TPU)/bin/python tools/aot_check.py --platform tpu --json $(WORKDIR)/aot_tpu.json
	PYTHONPATH=. $(AOT_GPU)/bin/python tools/aot_check.py --platform cuda --json $(WORKDIR)/aot_cuda.json

clean:
	rm -rf $(VENV) $(AOT_TPU) $(AOT_GPU) $(WORKDIR) results .pytest_cache
