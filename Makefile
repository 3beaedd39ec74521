# Two commands do everything: `make demo` and `make test`. Each creates the pinned virtual
# environment(s) on first use.
PYTHON ?= python3
VENV := .venv
OLAH_VENV := .venv-olah
BIN := $(VENV)/bin
export WANDB_MODE ?= offline

.PHONY: demo test test-all venv clean

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

demo: $(BIN)/.installed
	$(BIN)/zoo demo --out demo_output

test: $(BIN)/.installed $(OLAH_VENV)/bin/.installed
	ZOO_OLAH=$(abspath $(OLAH_VENV))/bin/olah-cli $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(BIN)/.installed $(OLAH_VENV)/bin/.installed
	ZOO_OLAH=$(abspath $(OLAH_VENV))/bin/olah-cli $(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(OLAH_VENV) demo_output
