"""ASGI middleware: security headers on every response, the request body limit, and the authentication gate.

The gate is structural, so a route added later is protected without anyone remembering to: every path under
``/api/`` (and ``/openapi.json``) needs a valid token except the sign-in route. Requests authenticated by the
session cookie must also carry the CSRF header when they change state.

The body limit is structural too: every request's body is counted as it is received (``Content-Length`` is
only an early answer; a chunked body has none), and once it passes the limit the request gets 413 and the
app reads nothing more. Uploads (:data:`LARGE_BODY_PATHS`) have their own, larger limit.

Before any of that, the ``Host`` header must be on the allow-list (400 otherwise: DNS rebinding), and the
client address and scheme are taken from forwarded headers when, and only when, the peer is a trusted proxy
(:mod:`zebra_web.proxy`); the rest of the app sees them as ``request.client`` and ``request.url.scheme``.
Over TLS every response carries HSTS; every authenticated response carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
from starlette.exceptions import HTTPException

from store import Store
from zebra_web.auth import CSRF_HEADER, AuthedUser, cookie_names, csrf_matches, resolve_token
from zebra_web.proxy import ForwardedResolver, HostAllowList

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest body of any request except uploads, by default (JSON bodies are small).
MAX_JSON_BODY = 1024 * 1024
#: Paths whose bodies may be larger: up to the upload limit given to :class:`SecurityMiddleware` (they also
#: enforce ``server.max_upload_bytes`` on the file content themselves).
LARGE_BODY_PATHS: frozenset[str] = frozenset({"/api/studies"})
#: Paths that need no credentials under the protected prefixes.
PUBLIC_API_PATHS: frozenset[str] = frozenset({"/api/auth/login"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


def needs_auth(path: str) -> bool:
    """Whether a request path is behind the authentication gate."""
    if path in PUBLIC_API_PATHS:
        return False
    return path.startswith("/api/") or path == "/api" or path == "/openapi.json"


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or ():
        out[key.decode("latin-1").lower()] = value.decode("latin-1")
    return out


def _content_length(scope: Scope) -> int:
    for key, value in scope.get("headers") or ():
        if key.lower() == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` once a request body passes its limit (the middleware answers 413).

    An ``HTTPException``, so FastAPI's body parsing passes it on instead of turning it into a 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, "The request body is too large.")
        self.limit = limit


async def send_too_large(send: Send, limit: int, *, close: bool = False) -> None:
    """Answers 413; ``close`` asks the server to drop the connection (the rest of the body is never read)."""
    await send_json(
        send,
        413,
        {"error": "The request body is too large.", "hint": f"Keep it under {limit} bytes."},
        [(b"connection", b"close")] if close else [],
    )


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def credentials(headers: dict[str, str], secure: bool = False) -> tuple[str | None, str]:
    """The token a request presents and how: ``Authorization: Bearer`` first, then the session cookie.

    Over TLS only the ``__Host-`` cookie counts: a plain-named one may have been planted over HTTP or by a
    sibling domain (session fixation).
    """
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "bearer"
    token = _cookie(headers.get("cookie", ""), cookie_names(secure)[0])
    return (token or None), "cookie"


def is_secure(scope: Scope) -> bool:
    """Whether the request came over TLS (directly, or to a trusted proxy; see :mod:`zebra_web.proxy`)."""
    return scope.get("scheme") in ("https", "wss")


async def send_json(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] = ()
) -> None:
    """Sends a complete JSON response."""
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class SecurityMiddleware:
    """Adds security headers, limits request bodies, and enforces authentication and CSRF (module docstring).

    Args:
        app: The wrapped ASGI app.
        store: Where tokens are looked up.
        max_body_bytes: Largest request body, counted as received, except on :data:`LARGE_BODY_PATHS`.
        max_upload_body_bytes: Largest body on :data:`LARGE_BODY_PATHS` (the whole multipart body).
        forwarded: Which peers' forwarded headers are believed (none by default).
        allowed_hosts: ``Host`` values served (``None``: any).
        hsts_max_age_s: HSTS max-age over TLS (0: no header).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: Store,
        max_body_bytes: int = MAX_JSON_BODY,
        max_upload_body_bytes: int | None = None,
        forwarded: ForwardedResolver | None = None,
        allowed_hosts: HostAllowList | None = None,
        hsts_max_age_s: int = 0,
    ) -> None:
        self.app = app
        self.forwarded = forwarded or ForwardedResolver()
        self.allowed_hosts = allowed_hosts
        self.hsts = (
            f"max-age={int(hsts_max_age_s)}; includeSubDomains".encode() if hsts_max_age_s > 0 else b""
        )
        self.store = store
        self.max_body_bytes = int(max_body_bytes)
        self.max_upload_body_bytes = int(
            max_upload_body_bytes if max_upload_body_bytes is not None else max_body_bytes
        )

    def body_limit(self, path: str) -> int:
        """The most bytes a request body to ``path`` may have."""
        return self.max_upload_body_bytes if path in LARGE_BODY_PATHS else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = _headers(scope)
        self._resolve_client(scope, headers)
        extra: list[tuple[bytes, bytes]] = list(SECURITY_HEADERS)
        if self.hsts and is_secure(scope):
            extra.append((b"strict-transport-security", self.hsts))
        authenticated = False

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = list(message.get("headers", []))
                if authenticated:
                    # Nothing a signed-in user sees may stay in a browser or proxy cache after sign-out.
                    own = [(k, v) for k, v in own if k.lower() != b"cache-control"]
                    own.append((b"cache-control", b"no-store"))
                present = {k.lower() for k, _ in own}
                message["headers"] = [*own, *((k, v) for k, v in extra if k not in present)]
            await send(message)

        if self.allowed_hosts is not None and not self.allowed_hosts.allows(headers.get("host")):
            log.info("request for a host not on the allow-list: 400")
            await send_json(
                send_with_headers,
                400,
                {
                    "error": "Unknown host.",
                    "hint": "Use the server's configured address (server.allowed_hosts).",
                },
            )
            return
        path = scope.get("path", "")
        limit = self.body_limit(path)
        if _content_length(scope) > limit:
            await send_too_large(send_with_headers, limit)
            return
        if needs_auth(path):
            user = await self._authenticate(scope, headers, send_with_headers)
            if user is None:
                return
            authenticated = True
            scope.setdefault("state", {})["user"] = user
        await self._call_limited(scope, receive, send_with_headers, limit)

    async def _call_limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Runs the app with a ``receive`` that counts body bytes and stops at ``limit``.

        Once the limit is passed, ``receive`` raises :class:`BodyTooLargeError` and keeps doing so; whatever
        the app then answers (or raises) is replaced by one 413, unless its response had already started.
        """
        received = 0
        rejected = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                raise BodyTooLargeError(limit)
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    raise BodyTooLargeError(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                # The app's own answer (to the exception, or whatever it made of it) is replaced by ours.
                if not started and message.get("type") == "http.response.start":
                    started = True
                    await send_too_large(send, limit, close=True)
                return
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise
            log.info("request body over the limit of %d bytes: 413", limit)
            if not started:
                started = True
                await send_too_large(send, limit, close=True)
            return
        if rejected and not started:
            await send_too_large(send, limit, close=True)

    def _resolve_client(self, scope: Scope, headers: dict[str, str]) -> None:
        """Replaces the peer address and scheme with the forwarded ones when the peer is a trusted proxy."""
        client = scope.get("client")
        peer = client[0] if client else None
        address, scheme = self.forwarded.resolve(
            peer,
            scope.get("scheme", "http"),
            headers.get("x-forwarded-for"),
            headers.get("x-forwarded-proto"),
        )
        if address != peer:
            scope["client"] = (address, 0)
        scope["scheme"] = scheme

    async def _authenticate(self, scope: Scope, headers: dict[str, str], send: Send) -> AuthedUser | None:
        token, via = credentials(headers, is_secure(scope))
        challenge = [(b"www-authenticate", b'Bearer realm="zebra"')]
        if not token:
            await send_json(
                send,
                401,
                {"error": "Not signed in.", "hint": "Sign in first (POST /api/auth/login)."},
                challenge,
            )
            return None
        user = await anyio.to_thread.run_sync(resolve_token, self.store, token, via)
        if user is None:
            await send_json(
                send,
                401,
                {"error": "Your session is invalid or has expired.", "hint": "Sign in again."},
                challenge,
            )
            return None
        unsafe = scope.get("method", "GET").upper() not in _SAFE_METHODS
        if via == "cookie" and unsafe and not csrf_matches(token, headers.get(CSRF_HEADER)):
            await send_json(
                send,
                403,
                {
                    "error": "Missing or wrong CSRF token.",
                    "hint": "Send the csrf_token from sign-in in the X-CSRF-Token header, or reload the page.",
                },
            )
            return None
        return user
