# vllama on an NVIDIA GPU (the default):
#   docker build -t vllama .
#   docker run --gpus all -p 11434:11434 -p 8265:8265 -v ~/.cache/huggingface:/root/.cache/huggingface vllama --model qwen2.5:1.5b
# Without a GPU (vLLM's CPU build; pip must be able to find torch's CPU build, e.g. through
# PIP_EXTRA_INDEX_URL passed as a build argument):
#   docker build --build-arg ENGINE=cpu --build-arg PIP_EXTRA_INDEX_URL=... -t vllama:cpu .
FROM python:3.11-slim

ARG ENGINE=gpu
ARG PIP_EXTRA_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY vllama ./vllama
COPY serve_configs ./serve_configs

# The CPU build of vLLM pulls torchvision/torchaudio/torchcodec built for CUDA, which break
# `import vllm` without CUDA; text and embedding models need none of them.
RUN pip install ".[${ENGINE}]" \
 && if [ "${ENGINE}" = "cpu" ]; then pip uninstall -y torchvision torchaudio torchcodec; fi

EXPOSE 11434 8265
ENTRYPOINT ["vllama", "serve", "--host", "0.0.0.0"]
CMD []
