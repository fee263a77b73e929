"""`vllama bench`: load generation and latency/throughput statistics for Ollama and OpenAI servers."""
