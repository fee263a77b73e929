"""The engine seam. Only `vllama.engine.vllm_engine` imports vllm."""
