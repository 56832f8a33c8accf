"""The service's front door, as plain ASGI middleware: checks the API key and its role, refuses
bodies over the size limit (413) and bodies that are not JSON (415), JSON objects that repeat a
key (400), and more requests than a worker may queue (503 with Retry-After), before any endpoint
code or body parsing runs. A refusal before the body is read closes the connection, so the
rest of the body is never read. Health, readiness, metrics, the OpenAPI document and the docs
page stay open, as probes and scrapers carry no keys; the docs page is served from local files
only, under a Content-Security-Policy that forbids anything else."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from suitability.serving.keys import Caller, KeyStore, Permission, WatchedKeys, parse_bearer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths anyone may read (probes, scrapers, the API description).
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/"})
#: Path prefixes that need the `audit` permission; every other path needs `predict`.
AUDIT_PREFIX = "/audit/"
#: What an audit record's id looks like (`/audit/{request_id}`); any other path under the
#: prefix names no record.
REQUEST_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
_REQUEST_ID = re.compile(REQUEST_ID.replace("$", r"\Z"))
#: Where the guard leaves the caller and the body for the endpoint (in the ASGI scope).
CALLER_KEY = "suitability.caller"
BODY_KEY = "suitability.body"
#: When the request must be answered by (`time.monotonic()` seconds): past it, the endpoint
#: answers 503 and audits nothing.
DEADLINE_KEY = "suitability.deadline"

_CLOSE = (b"connection", b"close")


async def _answer(
    send: Send,
    status: int,
    payload: dict[str, Any],
    headers: list[tuple[bytes, bytes]],
    *,
    close: bool = True,
) -> None:
    """Send a JSON answer. With `close` (every refusal made before the body was read), the
    server closes the connection after it instead of reading the rest of the body."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
                *([_CLOSE] if close else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(text: str) -> dict[str, Any]:
    return {"error": text}


class Guard:
    """ASGI middleware: authentication, authorisation, body size and content type, duplicate
    JSON keys, and a bound on the requests one worker holds at a time."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore | WatchedKeys,
        max_body_bytes: int,
        *,
        max_in_flight: int = 64,
        timeout_s: float = 30.0,
        routes: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        """`keys`: a fixed store, or a watched keys file (re-read when it changes).
        `max_in_flight`: requests this worker holds at once (running or waiting); beyond it a
        request is answered 503 at once. `timeout_s`: each request's deadline from arrival.
        `routes`: the guarded endpoints, path → methods (a path ending in `/` stands for every
        path under it); a caller with a valid key asking for another path gets 404, for another
        method 405, before its body is read. None: every path goes on to the app."""
        self.app = app
        self.routes = dict(routes) if routes is not None else None
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in DOCS_PATHS and scope.get("method") in ("GET", "HEAD"):
            await _docs_page(send)
            return
        if self._public(scope):
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        store = self.keys.current() if isinstance(self.keys, WatchedKeys) else self.keys
        if store is None:
            await _answer(send, 503, _error("the service cannot read its keys file"), [])
            return
        caller = store.authenticate(
            parse_bearer(headers.get(b"authorization", b"").decode("latin-1"))
        )
        if caller is None:
            await _answer(
                send,
                401,
                _error("missing or invalid API key (send Authorization: Bearer <key>)"),
                [(b"www-authenticate", b'Bearer realm="suitability"')],
            )
            return
        needed: Permission = "audit" if scope["path"].startswith(AUDIT_PREFIX) else "predict"
        if not caller.may(needed):
            await _answer(
                send, 403, _error(f"the {caller.role} role may not use {scope['path']}"), []
            )
            return
        if self.routes is not None:
            methods = self._methods(scope["path"])
            method = scope.get("method", "GET")
            if methods is None:
                known = ", ".join(sorted(self.routes))
                text = f"no endpoint {scope['path']}; the endpoints are {known}"
                await _answer(send, 404, _error(text), [])
                return
            if method not in methods and not (method == "HEAD" and "GET" in methods):
                allow = ", ".join(sorted(methods))
                text = f"{scope['path']} answers {allow}, not {method}"
                await _answer(send, 405, _error(text), [(b"allow", allow.encode())])
                return
            if scope["path"].startswith(AUDIT_PREFIX) and not _REQUEST_ID.match(
                scope["path"][len(AUDIT_PREFIX) :]
            ):
                await _answer(send, 404, _error("no audit record with this request id"), [])
                return
        state = scope.setdefault("state", {})
        state[CALLER_KEY] = caller
        state[DEADLINE_KEY] = arrived + self.timeout_s
        if self.in_flight >= self.max_in_flight:
            await _answer(
                send,
                503,
                _error(
                    f"the service is at capacity ({self.max_in_flight} requests in hand per "
                    "worker); retry after a second"
                ),
                [(b"retry-after", b"1")],
            )
            return
        self.in_flight += 1
        try:
            await self._admitted(scope, receive, send, headers)
        finally:
            self.in_flight -= 1

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            await _answer(
                send, 415, _error("the body must be JSON (Content-Type: application/json)"), []
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _answer(send, 413, _error(self._too_large()), [])
            return
        body = await self._read(receive)
        if body is None:
            await _answer(send, 413, _error(self._too_large()), [])
            return
        repeated = duplicate_key(body)
        if repeated is not None:
            problem = {"field": repeated, "rule": "must not repeat a key of its object"}
            payload = {"error": "invalid request: 1 problem", "detail": [problem]}
            await _answer(send, 400, payload, [], close=False)
            return
        scope["state"][BODY_KEY] = body
        await self.app(scope, _replay(body, receive), send)

    def _methods(self, path: str) -> frozenset[str] | None:
        """The methods `path` answers (None: no such endpoint)."""
        assert self.routes is not None
        if path in self.routes:
            return self.routes[path]
        for route, methods in self.routes.items():
            if route.endswith("/") and path.startswith(route) and len(path) > len(route):
                return methods
        return None

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


# --- duplicate keys ------------------------------------------------------------------------------


class _Repeated(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Repeated
    return out


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def duplicate_key(body: bytes) -> str | None:
    """The JSON path of the first key an object of `body` repeats (`profile.customer_id`), or
    None. JSON itself allows repeats and parsers keep the last one, so a body could say one
    thing to a reviewer and another to the model; such a body is refused. A body that is not
    JSON is left to the endpoint's parser, which names the problem. A key that is not a plain
    name is shown as `(a key)`: the client's text is not echoed."""
    try:
        json.loads(body, object_pairs_hook=_unique)
    except _Repeated:
        return _path_of_repeat(json.loads(body, object_pairs_hook=list), "")
    except ValueError:
        return None
    return None


def _path_of_repeat(value: Any, path: str) -> str | None:
    if isinstance(value, list) and all(isinstance(p, tuple) for p in value) and value:
        seen: set[str] = set()
        for key, item in value:
            name = key if _PLAIN_NAME.fullmatch(key) else "(a key)"
            where = f"{path}.{name}" if path else name
            if key in seen:
                return where
            seen.add(key)
            found = _path_of_repeat(item, where)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _path_of_repeat(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


# --- the docs page -------------------------------------------------------------------------------

#: The docs page's paths: BentoML's own index page loads Google Tag Manager and links out, so
#: the guard answers these itself.
DOCS_PATHS = frozenset({"/", "/docs"})

_DOCS_SCRIPT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
};"""
_DOCS_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_DOCS_SCRIPT.encode()).digest()).decode()
_DOCS_HTML = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>suitability — API</title>
    <link rel="stylesheet" type="text/css" href="/static_content/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script>{_DOCS_SCRIPT}</script>
  </body>
</html>
""".encode()
#: Everything from this origin, nothing from anywhere else (no trackers, fonts or badges).
DOCS_POLICY = (
    f"default-src 'none'; script-src 'self' 'sha256-{_DOCS_SCRIPT_HASH}'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def _docs_page(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(_DOCS_HTML)).encode()),
                (b"content-security-policy", DOCS_POLICY.encode()),
                (b"referrer-policy", b"no-referrer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _DOCS_HTML})


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
