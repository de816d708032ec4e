"""ASGI middleware: security headers on every response, and the authentication gate in front of ``/api``.

The gate is structural, so a route added later is protected without anyone remembering to: every path under
``/api/`` (and ``/openapi.json``) needs a valid token except the sign-in route. Requests authenticated by the
session cookie must also carry the CSRF header when they change state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from store import Store
from zebra.web.auth import CSRF_HEADER, SESSION_COOKIE, AuthedUser, csrf_matches, resolve_token

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Largest body of any request except uploads (JSON bodies are small; uploads check their own limits).
MAX_JSON_BODY = 1024 * 1024
#: Paths whose bodies may be larger (they stream and enforce ``server.max_upload_bytes`` themselves).
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


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def credentials(headers: dict[str, str]) -> tuple[str | None, str]:
    """The token a request presents and how: ``Authorization: Bearer`` first, then the session cookie."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "bearer"
    token = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
    return (token or None), "cookie"


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
    """Adds security headers and enforces authentication and CSRF (module docstring).

    Args:
        app: The wrapped ASGI app.
        store: Where tokens are looked up.
    """

    def __init__(self, app: ASGIApp, *, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in SECURITY_HEADERS if k not in present),
                ]
            await send(message)

        path = scope.get("path", "")
        if path not in LARGE_BODY_PATHS and _content_length(scope) > MAX_JSON_BODY:
            await send_json(
                send_with_headers,
                413,
                {"error": "The request body is too large.", "hint": f"Keep it under {MAX_JSON_BODY} bytes."},
            )
            return
        if needs_auth(path):
            user = await self._authenticate(scope, send_with_headers)
            if user is None:
                return
            scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send_with_headers)

    async def _authenticate(self, scope: Scope, send: Send) -> AuthedUser | None:
        headers = _headers(scope)
        token, via = credentials(headers)
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
