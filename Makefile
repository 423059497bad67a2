# The two commands of the README: `make run` and `make test`.
# Both install what they need on Debian (apt packages as root, a virtualenv):
# `make run` only what the service needs, `make test` also what the tests do.

VENV ?= .venv
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test soak lint bench check-system check-test-system clean

run: $(RUN_STAMP)
	$(VENV)/bin/userdir serve

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

# The races, faults and fuzzing of `make test`, longer (bounded to 30 minutes).
soak: $(TEST_STAMP)
	USERDIR_SOAK=1 timeout 1800 $(VENV)/bin/pytest tests/test_concurrency.py \
	  tests/test_invariants.py tests/test_faults.py tests/test_fuzz.py

# Writes bench/RESULTS.md and bench/results.json (about 15 minutes on a 2-core machine: 1k, 10k
# and 100k users, abuse, the audit log's cost, read replicas, large groups; wrk is used for
# throughput runs when installed: apt-get install wrk). A smoke run:
# `make bench BENCH_ARGS=--quick` (1000 users, short runs, written to
# /tmp/userdir-bench-quick); `--no-abuse`, `--no-audit`, `--no-replicas` and `--no-scale` leave
# parts out; `python -m bench --help` lists the options.
BENCH_ARGS ?=
bench: $(TEST_STAMP)
	@command -v wrk >/dev/null || [ "$$(id -u)" -ne 0 ] || apt-get install -y wrk >/dev/null
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/mypy

# Installs the Debian packages named after `need` that are missing; only as root.
define install_missing
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "missing Debian packages:$$missing (run: sudo apt-get install -y$$missing)" >&2; exit 1; \
	  fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y $$missing || { apt-get update && apt-get install -y $$missing; }; \
	fi
endef

# The service: Debian's slapd (slapd-contrib for pw-pbkdf2, which verifies
# imported PBKDF2 hashes) and the OpenLDAP client tools; python3-venv where
# the system Python lacks ensurepip.
check-system:
	@missing=""; \
	[ -x /usr/sbin/slapd ] || missing="$$missing slapd"; \
	[ -f /usr/lib/ldap/pw-pbkdf2.so ] || missing="$$missing slapd-contrib"; \
	command -v ldapsearch >/dev/null || missing="$$missing ldap-utils"; \
	python3 -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	$(install_missing)

# The tests, besides: python-ldap (django-auth-ldap's client, for
# tests/test_integrations.py) has no wheel on PyPI and compiles against the
# OpenLDAP and SASL headers (libldap-dev: libldap2-dev is its transitional
# name), with a C compiler and Python's headers; Debian's chromium for the
# console's browser tests (Playwright's own download cannot work offline);
# for tests/test_docker.py, Debian's docker.io (Engine 20.10; the test starts
# dockerd when none runs), docker-compose (Compose v1: bookworm has no v2
# plugin) and debootstrap (docker/base-images.sh, where Docker Hub is out of reach).
check-test-system: check-system
	@missing=""; \
	command -v dockerd >/dev/null || docker info >/dev/null 2>&1 || missing="$$missing docker.io"; \
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 \
	  || missing="$$missing docker-compose"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	[ -f /usr/include/ldap.h ] || missing="$$missing libldap-dev"; \
	[ -f /usr/include/sasl/sasl.h ] || missing="$$missing libsasl2-dev"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	python3 -c "import sysconfig, pathlib, sys; \
	  sys.exit(not pathlib.Path(sysconfig.get_paths()['include'], 'Python.h').exists())" \
	  || missing="$$missing python3-dev"; \
	[ -x /usr/lib/chromium/chromium ] || missing="$$missing chromium"; \
	$(install_missing)

$(RUN_STAMP): pyproject.toml | check-system
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | check-test-system
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP) $(RUN_STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
