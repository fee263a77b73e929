#!/bin/sh
# Installs Open WebUI, which `make test-webui` drives in a browser against vllama, into a virtual
# environment of its own: it is a large application (about 3 GB) whose pins are not vllama's.
#
#   scripts/install-webui.sh VENV VERSION TORCH_VERSION
#
# TORCH_VERSION: the torch release of vllama's environment, installed first (on a machine without
# a GPU, vLLM's CPU build): left to Open WebUI's own ranges, pip would take a multi-GB CUDA build.
set -eu

usage="usage: scripts/install-webui.sh VENV VERSION TORCH_VERSION"
venv=${1:?$usage}
version=${2:?$usage}
torch=${3:?$usage}
python=${PYTHON:-python3}

test -x "$venv/bin/python" || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==$torch"
"$venv/bin/python" -m pip install -q "open-webui==$version"
