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
pip_in = env $(foreach v,$(filter PIP_%,$(.VARIABLES)),-u $(v)) PIP_CONFIG_FILE=$(CURDIR)/scripts/pip-bootstrap.conf \
	$(1)/bin/python -m pip --isolated --disable-pip-version-check --no-input
PIP := $(call pip_in,$(VENV))
BOOTSTRAP_FAILED := scripts/bootstrap-failed

.PHONY: test test-oldest oldest-run run bench venv venv-run clean

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

# `make test-oldest`: the oldest stack pyproject allows (Python 3.11, the lowest runtime
# dependency versions in constraints/oldest.txt) in its own .venv-oldest, and the tests where
# versions differ: the proxy end to end with real pip and uv, the security tests that reach
# into mitmproxy, the unit tests. .ci/run runs it after `make test`. Without a Python 3.11
# it is skipped with a message, and fails when CREDPROXY_REQUIRE_SYSTEM_TOOLS=1 (CI).
OLDEST_PYTHON_VERSION := 3.11
OLDEST_VENV := .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed
OLDEST_TESTS ?= tests/unit tests/e2e/test_testbed.py tests/e2e/test_proxy_clients.py \
	tests/security/test_request_heads.py tests/security/test_challenge_body.py \
	tests/security/test_owner_only.py tests/security/test_host_target.py \
	tests/security/test_reload_races.py tests/security/test_mitmproxy_log_redaction.py \
	tests/security/test_save_flows.py tests/security/test_log_hygiene.py

test-oldest:
	@py=$$(scripts/find-python $(OLDEST_PYTHON_VERSION)) || { \
	  if [ "$${CREDPROXY_REQUIRE_SYSTEM_TOOLS:-}" = 1 ]; then \
	    echo "make test-oldest: FAILED: no Python $(OLDEST_PYTHON_VERSION), which CI needs to test the oldest supported stack (install it, e.g. pyenv install $(OLDEST_PYTHON_VERSION))" >&2; exit 1; \
	  fi; \
	  echo "make test-oldest: SKIPPED: no Python $(OLDEST_PYTHON_VERSION) here (install it to test the oldest supported stack)" >&2; exit 0; }; \
	$(MAKE) --no-print-directory OLDEST_PYTHON="$$py" oldest-run

$(OLDEST_VENV)/bin/python:
	$(OLDEST_PYTHON) -m venv $(OLDEST_VENV)

$(OLDEST_STAMP): pyproject.toml constraints/oldest.txt | $(OLDEST_VENV)/bin/python
	$(call pip_in,$(OLDEST_VENV)) install --quiet $(BOOTSTRAP_PIP_ARGS) -c constraints/oldest.txt -e '.[test,negotiate,pac]' || $(BOOTSTRAP_FAILED) $(OLDEST_VENV) test-oldest
	touch $(OLDEST_STAMP)

oldest-run: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -c 'import sys, mitmproxy.version as m; print("make test-oldest: Python", sys.version.split()[0], "mitmproxy", m.VERSION)'
	$(OLDEST_VENV)/bin/python -m pytest $(PYTEST_ARGS) $(OLDEST_TESTS)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .pytest_cache build *.egg-info
