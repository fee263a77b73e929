"""A small synchronous client for Ollama's HTTP API, used by the `vllama` client commands.

It follows ollama's `api/client.go`: the server comes from `OLLAMA_HOST` (read as `envconfig.Host()`
reads it), a non-2xx answer or an `{"error": ...}` line in a stream becomes one error type, and the
commands print that error as `Error: <message>` and exit 1, as the `ollama` CLI does.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import httpx
import typer

from vllama import __version__

DEFAULT_PORT = 11434
TRANSPORT: httpx.BaseTransport | None = None
"""The test seam: an `httpx.MockTransport` put here replaces the network for every command."""


class ClientError(Exception):
    """A request that failed: the server's message, and its HTTP status when it answered."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def resolve_host(value: str | None = None) -> str:
    """The server's base URL from `value` (default: `OLLAMA_HOST`), as ollama's `envconfig` reads it.

    Scheme `http` by default, with port 11434 when no scheme is given (80 or 443 when one is);
    `:port`, `host`, `host:port`, `[v6]:port`, `https://host:port/prefix` all work. Unspecified
    addresses (`0.0.0.0`, `::`, an empty host) become loopback, because they are fine to bind to
    but not to connect to (ollama's `ConnectableHost`).
    """
    raw = os.environ.get("OLLAMA_HOST", "") if value is None else value
    text = raw.strip().strip("\"'").strip()
    scheme, has_scheme, hostport = text.partition("://")
    default_port = DEFAULT_PORT
    if not has_scheme:
        scheme, hostport = "http", text
    elif scheme in ("http", "https"):
        default_port = 80 if scheme == "http" else 443
    hostport, _, path = hostport.partition("/")
    split = _split_host_port(hostport)
    if split is None:  # no port: the whole thing is the host
        bare = hostport.strip("[]")
        host, port = (str(_ip(bare)) if _ip(bare) else hostport) or "127.0.0.1", str(default_port)
    else:
        host, port = split
    if not port.lstrip("+").isdigit() or int(port) > 65535:
        port = str(default_port)
    address = _ip(host)
    if not host or (address is not None and address.is_unspecified):
        host = "::1" if address is not None and address.version == 6 else "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}:{int(port)}" + (f"/{path}" if path else "")


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's `net.SplitHostPort`: (host, port), or None when there is no port to split off."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1:].startswith(":"):
            return None
        return hostport[1:end], hostport[end + 2:]
    if hostport.count(":") != 1:
        return None
    host, _, port = hostport.partition(":")
    return host, port


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class OllamaClient:
    """JSON calls and NDJSON streams against one server."""

    def __init__(self, base_url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # No read timeout: a first answer can wait for a model to load, as with ollama's client.
        self._http = httpx.Client(
            transport=transport, timeout=httpx.Timeout(None, connect=10.0),
            headers={"User-Agent": f"vllama/{__version__}"},
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer (None when the body is empty)."""
        with self._failures():
            response = self._http.request(
                method, self.base_url + path, json=body, headers={"Accept": "application/json"}
            )
        if response.is_error:
            raise ClientError(_error_message(response), response.status_code)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(f"invalid response from server: {response.text[:200]}", response.status_code) from None

    def stream(self, method: str, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The objects of an NDJSON answer, one per line; an `{"error": ...}` line raises `ClientError`.

        Leaving the loop early (or Ctrl-C) closes the response, which tells the server to stop.
        """
        with self._failures(), self._http.stream(
            method, self.base_url + path, json=body, headers={"Accept": "application/x-ndjson"}
        ) as response:
            if response.is_error:
                response.read()
                raise ClientError(_error_message(response), response.status_code)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    raise ClientError(f"invalid response line from server: {line[:200]}") from None
                if isinstance(item, dict) and item.get("error"):
                    raise ClientError(str(item["error"]), response.status_code)
                yield item

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise ClientError(
                f"could not connect to vllama server at {self.base_url}; is it running? "
                "(start one with: vllama serve)"
            ) from None
        except httpx.HTTPError as exc:
            raise ClientError(str(exc) or type(exc).__name__) from None


def _error_message(response: httpx.Response) -> str:
    text = response.text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(error := data.get("error"), str) and error:
        return error
    return text or f"{response.status_code} {response.reason_phrase}"


def connect() -> OllamaClient:
    """A client for the server `OLLAMA_HOST` names."""
    return OllamaClient(resolve_host(), transport=TRANSPORT)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Print a failed request (or a bad Modelfile) as ollama does, `Error: <message>` on stderr, and exit 1."""
    from vllama.ollama_api.modelfile import ModelfileError

    try:
        yield
    except (ClientError, ModelfileError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None
