# One-command set-up: every target bootstraps the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test data bench-denoise bench-superres clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml (CPU build); antspyx is the optional ANTs baseline.
	$(BIN)/python -m pip install --quiet -e '.[test,ants]'
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/moemri data fetch

demo: $(STAMP)
	$(BIN)/moemri demo --out demo-output

test: data
	$(BIN)/python -m pytest Testing/Python -q

bench-denoise: data
	$(BIN)/moemri bench denoise --out bench-denoise.md

bench-superres: data
	$(BIN)/moemri bench superres --out bench-superres.md

clean-venv:
	rm -rf $(VENV)
