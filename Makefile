# whaled — set-up-and-go targets. `make run` and `make test` install what is missing
# (Debian packages, a venv with pinned Python dependencies) and then do their job.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := runc crun conmon catatonit tini busybox-static iproute2 openssl curl procps \
  docker-registry apache2-utils nftables docker-compose git
WHALED_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup sys-deps venv run test lint unit integration robustness-long clean

setup: sys-deps venv

# Install the Debian packages that are not installed yet (apt-get update once, only if needed).
sys-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.stamp: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.stamp

# Start whaled in the foreground on the default socket (unix:///run/whaled.sock). The
# sources are byte-compiled first: with PYTHONDONTWRITEBYTECODE set, every start would
# compile them again (~200 ms of the start-up).
run: setup
	$(PY) -m compileall -q whaled >/dev/null
	exec $(VENV)/bin/whaled $(WHALED_ARGS)

lint: venv
	$(VENV)/bin/ruff check whaled tests $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

# The whole suite: static checks, unit tests, integration tests against real daemons.
test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider tests $(PYTEST_ARGS)

# The hardening harness's long modes: more fuzz cases, more kills, a longer load (not in CI).
robustness-long: setup
	WHALED_ROBUSTNESS_LONG=1 $(PY) -m pytest -q -p no:cacheprovider tests/robustness $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
