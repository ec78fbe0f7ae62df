# `make test` and `make run` work on a fresh clone: they create .venv when it is missing.
# `make run` installs only what running needs; `make test` adds the test extras (and the
# optional negotiate extra, so the NTLM tests run). Separate
# stamps, so `make run` after `make test` installs nothing more.
#
# The bootstrap runs pip with --isolated: your pip.conf in HOME and PIP_* variables are not
# read (they may name the very index credproxy exists to unlock), the global config
# (/etc/pip.conf, /etc/xdg/pip/pip.conf) still is. To install from a mirror instead, pass
# pip options: `make run BOOTSTRAP_PIP_ARGS="--index-url https://mirror.example/simple/"`.
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed
BOOTSTRAP_PIP_ARGS ?=
# --isolated covers pip itself; the environment below also covers the pip it starts to install
# build dependencies (pip < 25 runs one that reads user config and PIP_* variables): an
# existing PIP_CONFIG_FILE makes pip skip the user's pip.conf but still read the global one
# (/dev/null would skip that too).
PIP := env $(foreach v,$(filter PIP_%,$(.VARIABLES)),-u $(v)) PIP_CONFIG_FILE=$(CURDIR)/scripts/pip-bootstrap.conf \
	$(BIN)/python -m pip --isolated --disable-pip-version-check --no-input
BOOTSTRAP_FAILED := scripts/bootstrap-failed

.PHONY: test run bench venv venv-run clean

venv: $(TEST_STAMP)
venv-run: $(RUN_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --quiet $(BOOTSTRAP_PIP_ARGS) -e . || $(BOOTSTRAP_FAILED)
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --quiet $(BOOTSTRAP_PIP_ARGS) -e '.[test,negotiate,pac]' || $(BOOTSTRAP_FAILED)
	touch $(RUN_STAMP) $(TEST_STAMP)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: $(RUN_STAMP)
	$(BIN)/credproxy serve

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
