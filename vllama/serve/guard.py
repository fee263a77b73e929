"""Who may call the server, and from where: API keys, the Host check against DNS rebinding,
Ollama's CORS origins, and the request size limit. One ASGI middleware in front of every route,
checking headers once per request (nothing on the per-token path).

- **API keys** (optional): `Authorization: Bearer <key>` on every route but `PUBLIC` (the
  "Ollama is running" probe clients use to find a server, and the health probe), compared with
  every configured key in constant time. Fail-closed: a route added later is guarded unless it
  is added to `PUBLIC`. 401 `{"error": "unauthorized"}`, OpenAI's error object on `/v1`.
- **Host** (Ollama's allowedHostsMiddleware): when the server listens on a loopback address only,
  a request whose Host is not this machine (localhost, `*.localhost`/`.local`/`.internal`, its
  hostname, a loopback, private or own address) is refused with 403: a web page whose domain
  has been pointed at 127.0.0.1 (DNS rebinding) cannot reach the API. On any other bind the
  server is meant to be reached by other names, and the Host is not checked.
- **CORS** (Ollama's rules and its `OLLAMA_ORIGINS`): a request from a browser page (an `Origin`
  header) is served only when that origin is allowed: localhost, 127.0.0.1 and 0.0.0.0 on any
  port, desktop and editor apps (`app://`, `file://`, `tauri://`, `vscode-webview://`...),
  browser extensions, and the configured ones (`*` wildcards). Others get 403, as in Ollama.
  Written here rather than with Starlette's CORSMiddleware, which leaves a simple request from
  a foreign origin (a form POST to /api/pull, say) to run and only withholds its headers.
- **Stopping**: once the server is stopping, new requests get 503 while those in flight finish.
- **Size**: a request body past `max_request_bytes` gets 413 before it is read whole (blob
  uploads, `/api/blobs/...`, are model files: they are not limited).
"""

from __future__ import annotations

import fnmatch
import hmac
import ipaddress
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from vllama.serve.stopping import SHUTTING_DOWN

#: Routes that answer without a key: (method, path).
PUBLIC = frozenset({("GET", "/"), ("HEAD", "/"), ("GET", "/-/healthz"), ("GET", "/-/routes")})
#: Ollama's default origins, before `OLLAMA_ORIGINS` (envconfig.AllowedOrigins).
DEFAULT_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")  # origins, not a bind
DEFAULT_APP_ORIGINS = ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
BROWSER_EXTENSIONS = ("chrome-extension://*", "moz-extension://*", "safari-web-extension://*", "safari-extension://*")
#: Request headers a browser may send cross-origin (Ollama's list, with OpenAI's client's own).
ALLOWED_HEADERS = (
    "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, x-stainless-arch, "
    "x-stainless-async, x-stainless-custom-poll-interval, x-stainless-helper-method, x-stainless-lang, "
    "x-stainless-os, x-stainless-package-version, x-stainless-poll-helper, x-stainless-retry-count, "
    "x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout"
)
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
#: Hosts under these names are this machine's own (Ollama's allowedHost).
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
#: Default request size limit: a chat with a few large images, base64, fits many times over.
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
UNLIMITED_PREFIXES = ("/api/blobs/",)


@dataclass(frozen=True)
class GuardSettings:
    api_keys: tuple[str, ...] = ()
    #: The address the server listens on (None: unknown, the Host is not checked).
    bind_host: str | None = None
    #: Origins allowed beside Ollama's defaults (`OLLAMA_ORIGINS`), with `*` wildcards.
    origins: tuple[str, ...] = ()
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: This machine's names and addresses, for the Host check (found once at start).
    own_hosts: frozenset[str] = field(default_factory=frozenset)
    #: Set once the server is stopping (`serve/stopping.py`): new requests get 503.
    stopping: threading.Event | None = None


def split_list(value: str | None) -> tuple[str, ...]:
    """`OLLAMA_ORIGINS` and `VLLAMA_API_KEYS`: comma-separated, blanks ignored."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def allowed_origin_patterns(extra: Iterable[str]) -> tuple[str, ...]:
    patterns = list(extra)
    for host in DEFAULT_ORIGIN_HOSTS:
        patterns += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    return (*patterns, *DEFAULT_APP_ORIGINS, *BROWSER_EXTENSIONS)


def origin_allowed(origin: str, patterns: Iterable[str]) -> bool:
    origin = origin.lower()
    return any(pattern == "*" or fnmatch.fnmatchcase(origin, pattern.lower()) for pattern in patterns)


def is_loopback_bind(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def machine_hosts() -> frozenset[str]:
    """This machine's hostname and the addresses its names resolve to."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    addresses: set[str] = set()
    for name in names:
        try:
            addresses |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    return frozenset(names | addresses)


def host_allowed(host_header: str, own_hosts: frozenset[str]) -> bool:
    """Ollama's rule: loopback, private, unspecified or own addresses; localhost and local
    suffixes; the hostname."""
    host = _host_part(host_header).lower()
    if host in ("", "localhost") or host in own_hosts or host.endswith(LOCAL_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_unspecified


def _host_part(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:11434
        return host_header[1:].split("]", 1)[0]
    if host_header.count(":") == 1:
        return host_header.rsplit(":", 1)[0]
    return host_header


def key_accepted(authorization: str, keys: Iterable[str]) -> bool:
    """`Bearer <key>` against every key, each compared in constant time (no early exit)."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    given_bytes = given.strip().encode()
    accepted = False
    for key in keys:
        accepted |= hmac.compare_digest(given_bytes, key.encode())
    return accepted


class Guard:
    """The ASGI middleware (Starlette's BaseHTTPMiddleware would wrap every streamed chunk)."""

    def __init__(self, app: Any, settings: GuardSettings) -> None:
        self.app = app
        self.settings = settings
        self._origins = allowed_origin_patterns(settings.origins)
        self._check_host = is_loopback_bind(settings.bind_host)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path, method = scope["path"], scope["method"]
        if self._check_host and not host_allowed(headers.get("host", ""), self.settings.own_hosts):
            await _refuse(send, path, 403, "forbidden: this server answers only requests for this machine's own host names")
            return
        origin = headers.get("origin")
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None:
            if not origin_allowed(origin, self._origins):
                await _refuse(send, path, 403, f"forbidden: origin '{origin}' is not allowed (OLLAMA_ORIGINS)")
                return
            cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
                    (b"access-control-allow-credentials", b"true")]
            if method == "OPTIONS" and "access-control-request-method" in headers:  # a preflight
                await _send(send, 204, b"", [*cors, (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                                             (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                                             (b"access-control-max-age", b"43200")])
                return
        if self.settings.stopping is not None and self.settings.stopping.is_set() and (method, path) not in PUBLIC:
            await _refuse(send, path, 503, SHUTTING_DOWN, extra=[*cors, (b"retry-after", b"1")])
            return
        if (self.settings.api_keys and (method, path) not in PUBLIC
                and not key_accepted(headers.get("authorization", ""), self.settings.api_keys)):
            await _refuse(send, path, 401, "unauthorized", extra=[*cors, (b"www-authenticate", b"Bearer")])
            return
        if not path.startswith(UNLIMITED_PREFIXES):
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.settings.max_request_bytes:
                await _refuse(send, path, 413, self._too_large(), extra=cors)
                return
            receive = self._limited(receive)
        if cors:
            send = _with_headers(send, cors)
        await self.app(scope, receive, send)

    def _too_large(self) -> str:
        return f"request body too large (over {self.settings.max_request_bytes} bytes: max_request_bytes)"

    def _limited(self, receive: Any) -> Any:
        """A body sent without a length (chunked) is counted as it arrives."""
        limit = self.settings.max_request_bytes
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(self._too_large())
            return message

        return limited_receive


class RequestTooLarge(Exception):
    """Raised while the body streams in past the limit; rendered 413 (`serve/errors.py`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def _with_headers(send: Any, extra: list[tuple[bytes, bytes]]) -> Any:
    async def send_with_headers(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with_headers


async def _refuse(send: Any, path: str, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    if path.startswith("/v1/"):
        # OpenAI's own answers: a bad key is an invalid request with code invalid_api_key.
        code = {401: "invalid_api_key"}.get(status)
        kind = {403: "permission_error", 503: "server_error"}.get(status, "invalid_request_error")
        body = orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
    else:
        body = orjson.dumps({"error": message})
    await _send(send, status, body, [(b"content-type", b"application/json; charset=utf-8"), *(extra or [])])


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
