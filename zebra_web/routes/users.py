"""Account management: your password and sessions; administrators manage users (issue 15)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from store.repo import get_user_by_username
from zebra_web.auth import AuthedUser, revoke_user_tokens
from zebra_web.context import AppContext, current_user, get_context
from zebra_web.deletion import storage_used
from zebra_web.errors import AuthenticationError, BadRequestError, PermissionDeniedError
from zebra_web.passwords import verify_password
from zebra_web.schemas import (
    AccountInfo,
    ChangePasswordRequest,
    ErrorBody,
    RevokedResponse,
    StorageResponse,
    UpdateUserRequest,
)
from zebra_web.users import delete_user, list_users, revoke_sessions, set_active, set_password

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["accounts"], responses={401: {"model": ErrorBody}})
_ADMIN_ONLY = {403: {"model": ErrorBody}, 404: {"model": ErrorBody}, 400: {"model": ErrorBody}}


def _require_admin(user: AuthedUser) -> None:
    if not user.is_admin:
        raise PermissionDeniedError("Only administrators can manage users.", hint="Ask an administrator.")


def _not_self(user: AuthedUser, username: str, what: str) -> None:
    if username == user.username:
        raise BadRequestError(
            f"You cannot {what} your own account here.",
            hint="Ask another administrator, or use the zebra user command on the server.",
        )


def _account(ctx: AppContext, username: str) -> AccountInfo:
    for u in list_users(ctx.store):
        if u.username == username:
            return AccountInfo(
                id=u.id, username=u.username, is_admin=u.is_admin, is_active=u.is_active, sessions=u.sessions
            )
    raise AssertionError("the user was just changed")


def _current_hash(ctx: AppContext, user_id: int, username: str) -> str | None:
    with ctx.store.session() as s:
        row = get_user_by_username(s, username)
        return row.password_hash if row is not None and row.id == user_id else None


@router.post(
    "/me/password",
    status_code=204,
    responses={400: {"model": ErrorBody}, 429: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    summary="Change your password (signs out your other sessions)",
    description=(
        "Checks `current_password` (throttled like sign-in), sets `new_password`, and ends every other "
        "session and API token of yours; this one stays signed in."
    ),
)
async def change_my_password(
    body: ChangePasswordRequest, request: Request, user: AuthedUser = Depends(current_user)
) -> Response:
    ctx = get_context(request)
    ip = request.client.host if request.client else "unknown"
    # Someone holding a stolen session must not guess the password faster than at the sign-in page.
    attempt = ctx.throttle.begin(ip, user.username)
    try:
        async with ctx.password_checks.slot():
            stored = await run_in_threadpool(_current_hash, ctx, user.id, user.username)
            ok = await run_in_threadpool(verify_password, stored, body.current_password)
        if not ok:
            attempt.failure()
            raise AuthenticationError("Your current password is wrong.", hint="Check it and try again.")
        attempt.success()
    finally:
        attempt.cancel()
    await run_in_threadpool(
        set_password,
        ctx.store,
        user.username,
        body.new_password,
        actor_id=user.id,
        keep_token_id=user.token_id,
        data_dir=ctx.data_dir,
    )
    return Response(status_code=204)


@router.post(
    "/me/sessions/revoke",
    response_model=RevokedResponse,
    summary="Sign out your other sessions",
    description="Ends every session and API token of yours except the one making this request.",
)
async def revoke_my_sessions(request: Request, user: AuthedUser = Depends(current_user)) -> RevokedResponse:
    ctx = get_context(request)
    n = await run_in_threadpool(revoke_user_tokens, ctx.store, user.id, keep_token_id=user.token_id)
    return RevokedResponse(revoked=n)


@router.get("/me/storage", response_model=StorageResponse, summary="Your storage use and quota")
async def my_storage(request: Request, user: AuthedUser = Depends(current_user)) -> StorageResponse:
    ctx = get_context(request)
    used = await run_in_threadpool(storage_used, ctx.store, ctx.data_dir, user.id)
    return StorageResponse(used_bytes=used, quota_bytes=ctx.settings.server.storage_quota_bytes)


@router.get(
    "/users",
    response_model=list[AccountInfo],
    responses=_ADMIN_ONLY,
    summary="Users (administrators only)",
)
async def get_users(request: Request, user: AuthedUser = Depends(current_user)) -> list[AccountInfo]:
    _require_admin(user)
    rows = await run_in_threadpool(list_users, get_context(request).store)
    return [
        AccountInfo(
            id=u.id, username=u.username, is_admin=u.is_admin, is_active=u.is_active, sessions=u.sessions
        )
        for u in rows
    ]


@router.patch(
    "/users/{username}",
    response_model=AccountInfo,
    responses=_ADMIN_ONLY,
    summary="Disable, enable or set the password of a user (administrators only)",
    description="`is_active: false` disables the user and signs them out; a new `password` signs them out too.",
)
async def patch_user(
    username: str, body: UpdateUserRequest, request: Request, user: AuthedUser = Depends(current_user)
) -> AccountInfo:
    _require_admin(user)
    ctx = get_context(request)
    if body.is_active is False:
        _not_self(user, username, "disable")
    if body.password is not None:
        await run_in_threadpool(
            set_password, ctx.store, username, body.password, actor_id=user.id, data_dir=ctx.data_dir
        )
    if body.is_active is not None:
        await run_in_threadpool(set_active, ctx.store, username, body.is_active, actor_id=user.id)
    return await run_in_threadpool(_account, ctx, username)


@router.post(
    "/users/{username}/revoke",
    response_model=RevokedResponse,
    responses=_ADMIN_ONLY,
    summary="Sign a user out everywhere (administrators only)",
)
async def revoke_user(
    username: str, request: Request, user: AuthedUser = Depends(current_user)
) -> RevokedResponse:
    _require_admin(user)
    n = await run_in_threadpool(revoke_sessions, get_context(request).store, username, actor_id=user.id)
    return RevokedResponse(revoked=n)


@router.delete(
    "/users/{username}",
    status_code=204,
    responses=_ADMIN_ONLY,
    summary="Delete a user with their studies, chats and sessions (administrators only)",
)
async def remove_user(username: str, request: Request, user: AuthedUser = Depends(current_user)) -> Response:
    _require_admin(user)
    _not_self(user, username, "delete")
    ctx = get_context(request)
    await run_in_threadpool(
        delete_user, ctx.store, ctx.data_dir, username, actor_id=user.id, overlays=ctx.overlays
    )
    return Response(status_code=204)
