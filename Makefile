# difftm + csrna: two commands for a newcomer.
#   make demo   create .venv, install, run the end-to-end 2DTM demo
#   make test   create .venv, install, run the default test suite of both packages
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# torch is pinned here (not in pyproject) so CPU machines take the local CPU build and never
# the multi-GB CUDA wheels; GPU machines may pre-install their own torch and set TORCH_SPEC=.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test test-slow test-gpu lint bench clean

venv: $(STAMP)

$(STAMP): difftm/pyproject.toml csrna/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(PIP) install --quiet "$(TORCH_SPEC)"; fi
	$(PIP) install --quiet -e "./difftm[test]" -e "./csrna[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/difftm demo --output demo_output

test: $(STAMP)
	$(VENV)/bin/ruff check difftm csrna benchmarks testing
	cd difftm && ../$(PY) -m pytest -q
	cd csrna && ../$(PY) -m pytest -q

test-gpu: $(STAMP)
	cd difftm && ../$(PY) -m pytest -q -m gpu

test-slow: $(STAMP)
	cd difftm && ../$(PY) -m pytest -q -m slow
	cd csrna && ../$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check difftm csrna benchmarks testing

clean:
	rm -rf $(VENV) demo_output
