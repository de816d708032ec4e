"""Sign-in tokens: creation, lookup by hash, expiry, revocation, and the CSRF token derived from them.

A token is 32 random bytes (URL-safe base64). The database keeps only ``sha256("zebra-token|" + token)``,
so a database leak yields no usable token. The CSRF token is ``sha256("zebra-csrf|" + token)``: the page
gets it at sign-in (and in a readable cookie) and must echo it in ``X-CSRF-Token`` on state-changing
requests authenticated by the session cookie; a cross-site page can neither read the cookie nor compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from store import AuthToken, Store, User, utcnow

#: Cookie holding the session token (HttpOnly, SameSite=Strict) over plain HTTP.
SESSION_COOKIE = "zebra_session"
#: Cookie holding the CSRF token (readable by the page, SameSite=Strict) over plain HTTP.
CSRF_COOKIE = "zebra_csrf"
#: Over TLS the cookies are ``Secure`` and get this prefix: the browser then only accepts them from this
#: exact host over HTTPS with ``Path=/`` and no ``Domain``, so neither a sibling domain nor plain HTTP can
#: plant one.
SECURE_PREFIX = "__Host-"
#: Header the page echoes the CSRF token in.
CSRF_HEADER = "x-csrf-token"


def new_token() -> str:
    """A fresh random session token."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database stores for ``token``."""
    return hashlib.sha256(b"zebra-token|" + token.encode("utf-8")).hexdigest()


def csrf_for(token: str) -> str:
    """The CSRF token bound to a session token."""
    return hashlib.sha256(b"zebra-csrf|" + token.encode("utf-8")).hexdigest()


def cookie_names(secure: bool) -> tuple[str, str]:
    """The session and CSRF cookie names: ``__Host-`` prefixed when served over TLS."""
    prefix = SECURE_PREFIX if secure else ""
    return prefix + SESSION_COOKIE, prefix + CSRF_COOKIE


def tokens_equal(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of two tokens as bytes (any text, non-ASCII too, compares without error)."""
    if not presented:
        return False
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogateescape"), str(presented).encode("utf-8", "surrogateescape")
    )


def csrf_matches(token: str, presented: str | None) -> bool:
    """Constant-time check of a presented CSRF token."""
    return tokens_equal(csrf_for(token), presented)


@dataclass(frozen=True)
class AuthedUser:
    """The signed-in user of a request.

    Attributes:
        id: User id.
        username: User name.
        is_admin: Whether the user may manage users.
        token_id: Id of the :class:`store.AuthToken` row used.
        expires_at: When that token expires.
        via: ``"cookie"`` or ``"bearer"``.
    """

    id: int
    username: str
    is_admin: bool
    token_id: int
    expires_at: datetime
    via: str


def issue_token(store: Store, user_id: int, ttl_hours: float) -> tuple[str, datetime]:
    """Creates a token for ``user_id`` valid ``ttl_hours``; drops that user's expired tokens.

    Returns:
        The token (shown once, never stored) and its expiry.
    """
    token = new_token()
    now = utcnow()
    expires = now + timedelta(hours=ttl_hours)
    with store.session() as s:
        s.execute(delete(AuthToken).where(AuthToken.user_id == user_id, AuthToken.expires_at <= now))
        s.add(AuthToken(token_hash=hash_token(token), user_id=user_id, expires_at=expires))
    return token, expires


def resolve_token(store: Store, token: str, via: str) -> AuthedUser | None:
    """The active user a token belongs to, or ``None`` when it is unknown, expired or the user is disabled."""
    if not token or len(token) > 256:
        return None
    with store.session() as s:
        row = s.execute(
            select(AuthToken, User)
            .join(User, User.id == AuthToken.user_id)
            .where(AuthToken.token_hash == hash_token(token))
        ).first()
        if row is None:
            return None
        tok, user = row
        if tok.expires_at <= utcnow() or not user.is_active:
            return None
        return AuthedUser(
            id=user.id,
            username=user.username,
            is_admin=bool(user.is_admin),
            token_id=tok.id,
            expires_at=tok.expires_at,
            via=via,
        )


def revoke_token(store: Store, token_id: int) -> None:
    """Deletes a token row (sign-out)."""
    with store.session() as s:
        s.execute(delete(AuthToken).where(AuthToken.id == token_id))


def revoke_user_tokens(store: Store, user_id: int, *, keep_token_id: int | None = None) -> int:
    """Signs a user out everywhere (but the ``keep_token_id`` session); returns how many tokens went."""
    with store.session() as s:
        query = delete(AuthToken).where(AuthToken.user_id == user_id)
        if keep_token_id is not None:
            query = query.where(AuthToken.id != keep_token_id)
        return int(s.execute(query).rowcount or 0)
