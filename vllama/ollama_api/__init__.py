"""Ollama's wire format. No ray, vllm or fastapi import here (tests/unit/test_layering.py)."""
