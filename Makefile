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

# the shipped model: train in seven stages (select on val), measure on test, export at half size
# (the export refits the orientation head on the gband612 training crops alone); stage 7 was
# trained without straightening, and the export switches it on (chosen on val, see the card)
DATA ?= ../shared/data/gband612
STRAIGHTEN_BEND ?= 0.5
model: $(STAMP)
	$(BIN)/python -m trainer train --config trainer/configs/default.yaml
	$(BIN)/python -m trainer train --config trainer/configs/default-stage2.yaml
	$(BIN)/python -m trainer train --config trainer/configs/default-stage3.yaml
	$(BIN)/python -m trainer train --config trainer/configs/default-stage4.yaml
	$(BIN)/python -m trainer train --config trainer/configs/default-stage5.yaml
	$(BIN)/python -m trainer train --config trainer/configs/default-stage6.yaml
	$(BIN)/python -m trainer train --config trainer/configs/default-stage7.yaml
	for split in val test; do $(BIN)/python -m trainer evaluate --data $(DATA) \
	  --cells $(DATA)/splits/$$split.txt --checkpoint runs/default-stage7/best.safetensors \
	  --straighten-bend $(STRAIGHTEN_BEND) \
	  --json runs/default-stage7/eval-$$split.json --plots runs/default-stage7/plots-$$split || exit 1; done
	$(BIN)/python -m trainer export --half --checkpoint runs/default-stage7/best.safetensors \
	  --out resources/karyo-default.safetensors --straighten-bend $(STRAIGHTEN_BEND) \
	  --orientation-cells $(DATA)/splits/train.txt --data $(DATA) \
	  --metrics val=runs/default-stage7/eval-val.json test=runs/default-stage7/eval-test.json

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
