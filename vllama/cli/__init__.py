"""The `vllama` command. Heavy imports (ray, vllm) happen inside commands: `--help` is instant."""
