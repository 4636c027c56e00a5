"""The ASGI middleware in front of every route: Host check, API key, body limit, counts.

Pure ASGI rather than `BaseHTTPMiddleware`, so a streamed response still sees the
client's disconnect (and frees its batch rows) and bodies are never copied twice.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from typing import Any

from .errors import APIError
from .metrics import Metrics

# Paths anyone may read when a key is set: the health check (load balancers send no
# key) and the playground page itself (static HTML; every call it makes needs the key).
PUBLIC_PATHS = frozenset({"/healthz", "/"})

# The names a browser may put in `Host:` for a server bound to loopback. Anything else is
# a page on another origin whose DNS name was rebound to 127.0.0.1 (DNS rebinding).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


def host_name(host_header: str) -> str:
    """`Host:` without its port: `127.0.0.1:8000` → `127.0.0.1`, `[::1]:80` → `[::1]`."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[: h.find("]") + 1] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def is_loopback(host: str) -> bool:
    """Whether a bind address only listens on this machine."""
    return host.lower() in LOOPBACK_HOSTS or host.startswith("127.")


class Guard:
    """Host allow-list, API key, body size limit, request counts and latencies.

    Args:
        api_key: when set, every path but `PUBLIC_PATHS` needs `Authorization: Bearer
            <key>` (compared in constant time), `/docs`, `/redoc` and `/openapi.json`
            included.
        allowed_hosts: host names accepted in the `Host:` header (None: any). `gpt2kit
            serve` sets the loopback names when it binds to loopback.
        max_body_bytes: largest request body, with or without `Content-Length` (413).
    """

    def __init__(
        self,
        app: Any,
        *,
        api_key: str | None,
        max_body_bytes: int,
        metrics: Metrics,
        allowed_hosts: Iterable[str] | None = None,
    ):
        self.app, self.max_body, self.metrics = app, max_body_bytes, metrics
        self.key = f"Bearer {api_key}".encode() if api_key is not None else None
        self.allowed = None if allowed_hosts is None else {host_name(h) for h in allowed_hosts}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        tracked = path.startswith("/v1/")
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}

        async def refuse(err: APIError) -> None:
            if tracked:
                self.metrics.count(path, err.status)
            await err.response()(scope, receive, send)

        if self.allowed is not None:
            host = host_name(headers.get("host", b"").decode("latin-1"))
            if host not in self.allowed:
                return await refuse(
                    APIError(
                        400,
                        f"Host header {host!r} is not one this server answers to "
                        f"({', '.join(sorted(self.allowed))}); see --allowed-hosts",
                        param="Host",
                        code="invalid_host",
                    )
                )
        if self.key is not None and path not in PUBLIC_PATHS:
            given = headers.get("authorization", b"")
            if not hmac.compare_digest(given, self.key):
                return await refuse(
                    APIError(
                        401,
                        "missing or wrong API key: send 'Authorization: Bearer <key>'",
                        code="invalid_api_key",
                    )
                )
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length", b"").decode("latin-1")
            if length.isdigit() and int(length) > self.max_body:
                return await refuse(
                    APIError(
                        413,
                        f"request body is {length} bytes, more than the {self.max_body} allowed",
                        code="body_too_large",
                    )
                )
            # Read the body here (bounded: a chunked body announces no length), then replay it.
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                more = message.get("more_body", False)
                if size > self.max_body:
                    return await refuse(
                        APIError(
                            413,
                            f"request body exceeds {self.max_body} bytes",
                            code="body_too_large",
                        )
                    )
            body = b"".join(chunks)
            replayed, inner = False, receive

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await inner()  # afterwards: wait for the disconnect, as Starlette expects

            receive = replay
        start = time.perf_counter()
        status, streamed = 500, False

        async def watch(message: dict) -> None:
            nonlocal status, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                streamed = ctype.startswith(b"text/event-stream")
                if tracked:
                    self.metrics.count(path, status)
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and tracked
                and not streamed  # streams record their latency when the last token is sent
                and status < 400
            ):
                self.metrics.latency(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, watch)
