"""Pure translation between the wire formats and the engine. No ray, vllm or fastapi import."""
