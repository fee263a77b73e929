"""The one exception family of vllama.

Errors are raised, never returned: handlers stay linear, and one place (`vllama.serve.errors`)
renders them, as `{"error": "..."}` on Ollama's routes and as OpenAI's error object on `/v1`.
"""

from __future__ import annotations


class VllamaError(Exception):
    """Base class: an HTTP status and a message meant for the client."""

    status_code = 500

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    def __reduce__(self):  # errors cross Ray actor boundaries: keep them picklable
        return (_rebuild, (type(self), self.message, self.status_code))


def _rebuild(cls: type[VllamaError], message: str, status_code: int) -> VllamaError:
    return cls(message, status_code=status_code)


class InvalidRequest(VllamaError):
    """The request is malformed or asks for something impossible (400)."""

    status_code = 400


class PromptTooLong(InvalidRequest):
    """vLLM refused a rendered prompt as longer than the model's context. The Ollama routes fit
    a conversation by dropping its oldest turns and rendering again (`serve/inference.py`);
    vLLM's own message (a count against `max_model_len`) is never what an Ollama client sees."""


class ModelNotFound(VllamaError):
    """The model name is not served here (404). The message is Ollama's, quoting the name as sent."""

    status_code = 404

    @classmethod
    def for_name(cls, name: str) -> ModelNotFound:
        return cls(f"model '{name}' not found")


class Overloaded(VllamaError):
    """No capacity to take the request now (503)."""

    status_code = 503


class EngineFailed(VllamaError):
    """The engine failed while serving the request (500)."""

    status_code = 500


class ConfigError(VllamaError):
    """A configuration value is invalid; raised at start, with a message that says what to change."""

    status_code = 500


class EngineDied(EngineFailed):
    """The engine serving the request stopped (its process died, or it stopped making progress).
    Another replica may take the request over (`serve/forward.py`); `replica` says which one
    failed, so that the request avoids it."""

    status_code = 500

    def __init__(self, message: str, *, status_code: int | None = None, replica: str = "") -> None:
        super().__init__(message, status_code=status_code)
        self.replica = replica

    def __reduce__(self):
        return (_rebuild_engine_died, (type(self), self.message, self.status_code, self.replica))


def _rebuild_engine_died(cls: type[EngineDied], message: str, status_code: int, replica: str) -> EngineDied:
    return cls(message, status_code=status_code, replica=replica)
