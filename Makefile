# The two commands of the README: `make run` and `make test`.
# Both install what they need on Debian (apt packages as root, a virtualenv).

VENV ?= .venv
STAMP := $(VENV)/.installed
APT_PACKAGES := slapd ldap-utils libldap-dev libsasl2-dev gcc python3-dev

.PHONY: run test soak lint bench check-system clean

run: $(STAMP)
	$(VENV)/bin/userdir serve

test: $(STAMP)
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

# The races, faults and fuzzing of `make test`, longer (bounded to 30 minutes).
soak: $(STAMP)
	USERDIR_SOAK=1 timeout 1800 $(VENV)/bin/pytest tests/test_concurrency.py \
	  tests/test_invariants.py tests/test_faults.py tests/test_fuzz.py

# Writes bench/RESULTS.md and bench/results.json (about two minutes; wrk is
# used for throughput runs when installed: apt-get install wrk).
bench: $(STAMP)
	@command -v wrk >/dev/null || [ "$$(id -u)" -ne 0 ] || apt-get install -y wrk >/dev/null
	$(VENV)/bin/python -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/mypy

# Debian's slapd and the OpenLDAP client tools; python3-venv where the
# system Python lacks ensurepip. python-ldap (django-auth-ldap's client, for
# tests/test_integrations.py) has no wheel on PyPI and compiles against the
# OpenLDAP and SASL headers (libldap-dev: libldap2-dev is its transitional
# name), with a C compiler and Python's headers. Installed only when missing,
# and only as root.
check-system:
	@missing=""; \
	[ -x /usr/sbin/slapd ] || missing="$$missing slapd"; \
	command -v ldapsearch >/dev/null || missing="$$missing ldap-utils"; \
	python3 -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	[ -f /usr/include/ldap.h ] || missing="$$missing libldap-dev"; \
	[ -f /usr/include/sasl/sasl.h ] || missing="$$missing libsasl2-dev"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	python3 -c "import sysconfig, pathlib, sys; \
	  sys.exit(not pathlib.Path(sysconfig.get_paths()['include'], 'Python.h').exists())" \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "missing Debian packages:$$missing (run: sudo apt-get install -y$$missing)" >&2; exit 1; \
	  fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y $$missing || { apt-get update && apt-get install -y $$missing; }; \
	fi

$(STAMP): pyproject.toml | check-system
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
