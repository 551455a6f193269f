# Every target is idempotent and does its own set-up on a fresh machine with only Python 3.11 and pip.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
EXTRAS ?= chem,campaign,dft,data,notebooks,dev
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | $(PYTHON) -c "import hashlib,sys;print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:12])")

.PHONY: install demo demo-core test test-slow lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The CPU build of torch is installed first: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet torch==2.13.0 || \
		$(PIP) install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The main job: 100 QM9 molecules from the embedded GDSS model, then their metrics (novelty and FCD too when
# $$SCOREGEN_DATA points at the reference data). `make demo-core` trains and samples a toy model with the shared core.
demo: install
	$(VENV)/bin/graphgen sample -n 100 --seed 0 --out runs/demo/qm9_samples.smi
	$(VENV)/bin/graphgen evaluate runs/demo/qm9_samples.smi --dataset QM9

demo-core: install
	$(VENV)/bin/python -m shared.demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check shared graphgen molgen crysgen benchmarks tests

bench: install
	$(PY) -m benchmarks.run --all

clean:
	rm -rf $(VENV) build *.egg-info
