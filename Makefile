# Two commands do all set-up on a fresh Linux machine with Python 3.10+:
#   make run    create .venv if missing, then open the karyo app on the example cell
#   make test   create .venv if missing, then run ruff, the layer contracts and the test suite
#   make model  retrain the shipped model from scratch on ../shared/data/gband612
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.karyo-installed

.PHONY: run test env clean-env model

run: $(STAMP)
	$(BIN)/karyo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

env: $(STAMP)

# the shipped model: train (select on val), measure on test, copy into resources/
MODEL_RUN ?= runs/default
model: $(STAMP)
	$(BIN)/python -m trainer train --config trainer/configs/default.yaml --output $(MODEL_RUN)
	$(BIN)/python -m trainer evaluate --data ../shared/data/gband612 \
	  --cells ../shared/data/gband612/splits/test.txt --checkpoint $(MODEL_RUN)/best.safetensors \
	  --json $(MODEL_RUN)/eval-test.json --plots $(MODEL_RUN)/plots
	$(BIN)/python -m trainer export --half --checkpoint $(MODEL_RUN)/best.safetensors \
	  --out resources/karyo-default.safetensors

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "karyo needs Python 3.10 or newer ($(PYTHON) is older); set PYTHON=python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
	  { echo "could not create $(VENV): install your Python's venv module (Debian/Ubuntu: python3-venv)"; exit 1; }
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

clean-env:
	rm -rf $(VENV)
