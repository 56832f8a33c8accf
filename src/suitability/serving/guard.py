"""The service's front door, as plain ASGI middleware: checks the API key and its role, refuses
bodies over the size limit (413, reading no further) and bodies that are not JSON (415), before
any endpoint code or body parsing runs. Health, readiness, metrics and the OpenAPI document stay
open, as probes and scrapers carry no keys."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from suitability.serving.keys import Caller, KeyStore, Permission, parse_bearer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths anyone may read (probes, scrapers, the API description).
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/"})
#: Path prefixes that need the `audit` permission; every other path needs `predict`.
AUDIT_PREFIX = "/audit/"
#: Where the guard leaves the caller and the body for the endpoint (in the ASGI scope).
CALLER_KEY = "suitability.caller"
BODY_KEY = "suitability.body"


async def _answer(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": error}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: authentication, authorisation, body size and content type."""

    def __init__(self, app: ASGIApp, keys: KeyStore, max_body_bytes: int) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._public(scope):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        caller = self.keys.authenticate(
            parse_bearer(headers.get(b"authorization", b"").decode("latin-1"))
        )
        if caller is None:
            await _answer(
                send,
                401,
                "missing or invalid API key (send Authorization: Bearer <key>)",
                [(b"www-authenticate", b'Bearer realm="suitability"')],
            )
            return
        needed: Permission = "audit" if scope["path"].startswith(AUDIT_PREFIX) else "predict"
        if not caller.may(needed):
            await _answer(send, 403, f"the {caller.role} role may not use {scope['path']}", [])
            return
        scope.setdefault("state", {})[CALLER_KEY] = caller
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            await _answer(send, 415, "the body must be JSON (Content-Type: application/json)", [])
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _answer(send, 413, self._too_large(), [])
            return
        body = await self._read(receive)
        if body is None:
            await _answer(send, 413, self._too_large(), [])
            return
        scope["state"][BODY_KEY] = body
        await self.app(scope, _replay(body, receive), send)

    def _public(self, scope: Scope) -> bool:
        path = scope["path"]
        return path in PUBLIC_PATHS or path.startswith("/static_content/")

    def _too_large(self) -> str:
        return f"the body is larger than the limit of {self.max_body_bytes:,} bytes"

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the already-read body once, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def caller_of(scope: Scope) -> Caller:
    """The caller the guard authenticated (endpoints behind the guard always have one)."""
    return scope["state"][CALLER_KEY]
