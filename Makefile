# Two commands do everything: `make demo` and `make test`. Each creates the pinned virtual
# environment(s) on first use.
PYTHON ?= python3
VENV := .venv
OLAH_VENV := .venv-olah
BIN := $(VENV)/bin
export WANDB_MODE ?= offline
# The authors' released weights (Germain, Chen & Koltun 2019): converted on set-up, never committed.
ZOO_WEIGHTS ?= ../shared/weights
CONVERTED := hub_cards/feature-loss-can/model.safetensors hub_cards/feature-loss-net-germain2019/model.safetensors

.PHONY: demo test test-all venv weights clean

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# olah (a Hub-compatible server on loopback) lives in its own venv: its pins are not ours.
$(OLAH_VENV)/bin/.installed: requirements-olah.lock
	$(PYTHON) -m venv $(OLAH_VENV)
	$(OLAH_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-olah.lock
	touch $@

venv: $(BIN)/.installed

# A card's weights are (re)converted when missing or older than its committed config.json;
# `zoo convert` checks them against that config's weights_sha256 before moving them in.
weights: $(CONVERTED)

hub_cards/feature-loss-can/model.safetensors: RELEASE := germain2019
hub_cards/feature-loss-net-germain2019/model.safetensors: RELEASE := germain2019-lossnet
$(CONVERTED): hub_cards/%/model.safetensors: hub_cards/%/config.json | $(BIN)/.installed
	@if [ -d "$(ZOO_WEIGHTS)/$(RELEASE)" ]; then \
		$(BIN)/zoo convert "$(ZOO_WEIGHTS)/$(RELEASE)"; \
	else \
		echo "weights: $(ZOO_WEIGHTS)/$(RELEASE) not found, so $* has no weights here (commands fall back to wiener)."; \
		echo "  They are converted from the authors' release (MIT): get its TensorFlow checkpoint (the .index and"; \
		echo "  .data-00000-of-00001 files; see hub_cards/$*/README.md for their sha256), then run"; \
		echo "  'zoo convert PATH/TO/$(RELEASE)' or 'make weights ZOO_WEIGHTS=PATH/TO'; or load the published card from the Hub."; \
	fi

demo: $(BIN)/.installed weights
	$(BIN)/zoo demo --out demo_output

test: $(BIN)/.installed $(OLAH_VENV)/bin/.installed weights
	ZOO_OLAH=$(abspath $(OLAH_VENV))/bin/olah-cli $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(BIN)/.installed $(OLAH_VENV)/bin/.installed weights
	ZOO_OLAH=$(abspath $(OLAH_VENV))/bin/olah-cli $(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(OLAH_VENV) demo_output
