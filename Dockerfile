# vllama on NVIDIA GPUs (the default image), on vLLM's own CUDA image for the release that
# pyproject.toml pins, so vLLM, torch and their CUDA kernels are the ones vLLM ships:
#   docker build -t vllama .
#   docker run --gpus all -p 11434:11434 -p 8265:8265 -v ~/.cache/huggingface:/root/.cache/huggingface vllama --model qwen2.5:1.5b
# Without a GPU, Dockerfile.cpu.
FROM vllm/vllm-openai:v0.32.0

ENV PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts/install.sh ./scripts/
COPY vllama ./vllama
COPY serve_configs ./serve_configs

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# `make install`'s own steps. The image's vLLM already satisfies the `gpu` extra, so pip keeps
# it; the constraint makes pip fail rather than swap it, or the torch built for the image's
# CUDA, for another build.
RUN python3 -m pip list --format=freeze | grep -i -E '^(vllm|torch)==' > /tmp/image-engine.txt \
 && PIP_CONSTRAINT=/tmp/image-engine.txt sh scripts/install.sh gpu \
 && rm /tmp/image-engine.txt

EXPOSE 11434 8265
ENTRYPOINT ["vllama", "serve", "--host", "0.0.0.0"]
CMD []
