"""Sign-in, sign-out, the current user, and user creation by administrators."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from store.repo import get_user_by_username, record_audit
from zebra_web.auth import (
    SESSION_COOKIE,
    AuthedUser,
    cookie_names,
    csrf_for,
    issue_token,
    revoke_token,
)
from zebra_web.context import AppContext, current_user, get_context
from zebra_web.errors import AuthenticationError, PermissionDeniedError
from zebra_web.passwords import verify_password
from zebra_web.schemas import ErrorBody, LoginRequest, LoginResponse, MeResponse, NewUserRequest, UserInfo
from zebra_web.users import create_user

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["auth"], responses={401: {"model": ErrorBody}})


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _check_password(ctx: AppContext, username: str, password: str) -> tuple[int, str, bool] | None:
    with ctx.store.session() as s:
        user = get_user_by_username(s, username)
        found = None if user is None else (user.id, user.username, bool(user.is_admin), user.is_active)
        password_hash = None if user is None else user.password_hash
    # Hash outside any transaction: it is slow on purpose, and must not hold SQLite's write lock.
    ok = verify_password(password_hash, password) and found is not None and found[3]
    with ctx.store.session() as s:
        if not ok:
            record_audit(s, "auth.login_failed", user_id=found[0] if found else None, target_type="user")
            return None
        record_audit(s, "auth.login", user_id=found[0], target_type="user", target_id=found[0])
    return found[0], found[1], found[2]


@router.post(
    "/auth/login",
    response_model=LoginResponse,
    responses={429: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    summary="Sign in",
    description=(
        "Checks the password (Argon2id). By default sets the HttpOnly, SameSite=Strict session cookie and a "
        "readable CSRF cookie, and returns the CSRF token to send in `X-CSRF-Token` on POST/PATCH/DELETE. "
        "With `bearer: true` returns a token for `Authorization: Bearer` instead (no cookies, no CSRF). "
        "Failed attempts are throttled per (user name, address), per user name and per address (429 with "
        "Retry-After), counting attempts in progress; when too many passwords are being checked at once, "
        "503 with Retry-After."
    ),
)
async def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
    ctx = get_context(request)
    # A slot is reserved before the slow password check and the outcome recorded after it, so concurrent
    # attempts count against the limits while they are checked; then a server-wide cap on checks at once.
    attempt = ctx.throttle.begin(_client_ip(request), body.username)
    try:
        async with ctx.password_checks.slot():
            found = await run_in_threadpool(_check_password, ctx, body.username, body.password)
        if found is None:
            attempt.failure()
            raise AuthenticationError("Wrong user name or password.", hint="Check both and try again.")
        attempt.success()
    finally:
        attempt.cancel()  # no-op after failure/success; releases the slot when no password was checked
    user_id, username, is_admin = found
    ttl = ctx.settings.server.session_ttl_hours
    token, expires = await run_in_threadpool(issue_token, ctx.store, user_id, ttl)
    info = UserInfo(id=user_id, username=username, is_admin=is_admin)
    if body.bearer:
        return LoginResponse(user=info, expires_at=expires.isoformat(), token=token, token_type="bearer")
    csrf = _set_cookies(request, response, token, ttl)
    return LoginResponse(user=info, expires_at=expires.isoformat(), csrf_token=csrf)


def _set_cookies(request: Request, response: Response, token: str, ttl_hours: float) -> str:
    """Sets the session and CSRF cookies (``Secure`` and ``__Host-`` over TLS); returns the CSRF token."""
    secure = request.url.scheme == "https"
    session_name, csrf_name = cookie_names(secure)
    max_age = int(ttl_hours * 3600)
    response.set_cookie(
        session_name, token, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/"
    )
    csrf = csrf_for(token)
    response.set_cookie(
        csrf_name, csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/"
    )
    response.headers["Cache-Control"] = "no-store"
    return csrf


def _clear_cookies(request: Request, response: Response) -> None:
    secure = request.url.scheme == "https"
    for name in cookie_names(secure):
        response.delete_cookie(name, path="/", secure=secure, httponly=name.endswith(SESSION_COOKIE))


@router.post("/auth/logout", status_code=204, summary="Sign out (revokes the token)")
async def logout(request: Request, user: AuthedUser = Depends(current_user)) -> Response:
    ctx = get_context(request)
    await run_in_threadpool(revoke_token, ctx.store, user.token_id)
    response = Response(status_code=204)
    _clear_cookies(request, response)
    return response


@router.get("/me", response_model=MeResponse, summary="The signed-in user")
async def me(user: AuthedUser = Depends(current_user)) -> MeResponse:
    return MeResponse(
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        auth=user.via,
        expires_at=user.expires_at.isoformat(),
    )


@router.post(
    "/users",
    response_model=UserInfo,
    status_code=201,
    responses={403: {"model": ErrorBody}, 400: {"model": ErrorBody}},
    summary="Create a user (administrators only)",
)
async def add_user(
    body: NewUserRequest, request: Request, user: AuthedUser = Depends(current_user)
) -> UserInfo:
    if not user.is_admin:
        raise PermissionDeniedError("Only administrators can create users.", hint="Ask an administrator.")
    ctx = get_context(request)
    new_id = await run_in_threadpool(
        create_user, ctx.store, body.username, body.password, is_admin=body.is_admin
    )
    return UserInfo(id=new_id, username=body.username, is_admin=body.is_admin)
