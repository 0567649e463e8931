# One-command set-up: every target bootstraps the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test data browser web screenshots bench-denoise bench-superres train-smoe train-remix train-moediff train-nsmoe clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml (CPU build); antspyx is the optional ANTs baseline.
	$(BIN)/python -m pip install --quiet -e '.[test,ants,web,cluster]'
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/moemri data fetch

demo: $(STAMP)
	$(BIN)/moemri demo --out demo-output

# The browser tests drive Debian's Chromium (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } || echo "no Chromium: the moemri web browser tests will be skipped"

test: data browser
	$(BIN)/python -m pytest Testing/Python -q

web: $(STAMP)
	$(BIN)/moemri-web --sample

# The README's screenshots (Resources/Screenshots/): the web demo running the shipped SMoE and
# REMIx on a 1 mm box of the sample head, in headless Chromium (a few minutes on a CPU).
screenshots: $(STAMP) browser
	MOEMRI_SCREENSHOTS=1 $(BIN)/python -m pytest Testing/Python/test_web.py -q -k screenshots

bench-denoise: data
	$(BIN)/moemri bench denoise --out bench-denoise.md

bench-superres: data
	$(BIN)/moemri bench superres --out bench-superres.md

# Rebuilds Resources/Weights/smoe (seeded, logged to its train.log). Resumable: the shared loop
# checkpoints to Resources/Weights/smoe/checkpoints/; stop it any time (Ctrl-C, or MINUTES=30 for a
# time limit) and run the same command again to continue. Each expert run: ~30 min on one core.
train-smoe: data
	nice -n 10 $(BIN)/python -m moemri.train.smoe $(if $(MINUTES),--minutes $(MINUTES))

# Trains REMIx's networks (seeded; checkpoints and train.log in Resources/Weights/remix/checkpoints;
# about 1-1.5 h on one idle core). Stopped (SIGTERM, Ctrl-C), the same command resumes. When every
# stage is done the networks go to Resources/Weights/remix-candidate/remix: compare them with
# MOEMRI_WEIGHTS=Resources/Weights/remix-candidate moemri bench superres --methods bspline remix
# before copying them over Resources/Weights/remix.
train-remix: data
	nice -n 10 $(BIN)/python -m moemri.train.remix --export --out Resources/Weights/remix-candidate/remix

# Trains MoEDiff-SR with E = 3, 1 and 5 experts in turn, the same steps each (seeded; checkpoints
# and train.log in Resources/Weights/moediff/checkpoints; ~15 min per run on one idle core, E = 5
# longer). Stopped (SIGTERM, Ctrl-C, MINUTES=...), the same command resumes; each finished run is
# written to Resources/Weights/moediff with its manifest entry. The shipped E = 5 had only
# --experts 5 --steps 1000; delete checkpoints/e5.done.json to retrain it with the others' 3000.
train-moediff: data
	nice -n 10 $(BIN)/python -m moemri.train.moediff $(if $(MINUTES),--minutes $(MINUTES))

# Trains N-SMoE (K = 8, the K = 1 ablation, K = 16, then K = 8's adversarial fine-tune; seeded, resumable,
# checkpoints and train.log in Resources/Weights/nsmoe/checkpoints; ~30 min on one core) and
# exports every finished model to Resources/Weights/nsmoe.
train-nsmoe: data
	nice -n 10 $(BIN)/python -m moemri.train.nsmoe --export $(if $(MINUTES),--minutes $(MINUTES))

clean-venv:
	rm -rf $(VENV)
