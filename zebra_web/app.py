"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from store import Store
from zebra.config import Settings, get_settings
from zebra.errors import ZebraError
from zebra_web.agent_adapter import AgentAdapter, AgentFactory, default_agent_factory
from zebra_web.context import AppContext
from zebra_web.deletion import private_dir
from zebra_web.errors import RateLimitedError, ServerBusyError, StudyNotReadyError, WebError, status_for
from zebra_web.inflight import UserInflight
from zebra_web.middleware import SecurityMiddleware
from zebra_web.overlays import OverlayStore
from zebra_web.proxy import ForwardedResolver, HostAllowList
from zebra_web.ratelimit import LoginThrottle, PasswordCheckSlots
from zebra_web.redact import mask_secrets
from zebra_web.routes import auth, kb, sessions, studies, users
from zebra_web.uploads import body_allowance

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
API_DESCRIPTION = """Zebra's web API (research use only: not for clinical decisions).

Every route under `/api` except `POST /api/auth/login` needs a token: the `zebra_session` cookie set at
sign-in (then POST/PATCH/DELETE must send `X-CSRF-Token`), or `Authorization: Bearer <token>` from
`POST /api/auth/login` with `bearer: true`. Errors are JSON `{"error": ..., "hint": ...}`.
"""


def _error(
    status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ZebraError)
    async def zebra_error(_request: Request, exc: ZebraError) -> JSONResponse:
        status = status_for(exc)
        retry_after = (
            exc.retry_after
            if isinstance(exc, (RateLimitedError, StudyNotReadyError, ServerBusyError))
            else None
        )
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        if status >= 500 and not isinstance(exc, WebError):
            # Server-side failures may quote internals (URLs, credentials, upstream replies): log only.
            log.error("request failed: %s: %s", type(exc).__name__, mask_secrets(exc.message))
            return _error(status, "Internal server error.", "Try again; if it persists, see the server log.")
        if status >= 500:
            log.error("request failed: %s", type(exc).__name__)
        return _error(status, exc.message, exc.hint, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(
            422, "Invalid request: " + "; ".join(problems) + ".", "See /docs for the expected fields."
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        hint = "See /docs for the API." if exc.status_code in (404, 405) else None
        return _error(exc.status_code, message, hint, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "Internal server error.", "Try again; if it persists, see the server log.")


def _evidence_roots(settings: Settings) -> tuple[Path, ...]:
    """Folders that relative image paths of retrieved evidence may be relative to (bundle, data sets)."""
    import os

    candidates = [settings.bundle_dir, settings.knowledge.medpix_path]
    shared = os.environ.get("ZEBRA_SHARED_DATA")
    if shared:
        candidates += [Path(shared), Path(shared) / "medpix-2.0"]
    return tuple(Path(p) for p in candidates if p is not None)


def _allowed_hosts(settings: Settings) -> HostAllowList:
    """``server.allowed_hosts``, plus the address the server listens on when it is one address."""
    hosts = list(settings.server.allowed_hosts)
    if settings.server.host not in ("", "0.0.0.0", "::"):
        hosts.append(settings.server.host)
    return HostAllowList.of(hosts)


def create_app(
    settings: Settings | None = None,
    *,
    agent_factory: AgentFactory | None = None,
    store: Store | None = None,
    throttle: LoginThrottle | None = None,
    password_checks: PasswordCheckSlots | None = None,
    agent_concurrency: int = 1,
    intake_timeout_s: float = 120.0,
    migrate: bool = True,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """Builds the web app: API, page, security middleware. Nothing global: every call is independent.

    Args:
        settings: Zebra's settings (``get_settings()`` when ``None``): data directory, store, limits.
        agent_factory: Builds the diagnostic agent on first question; ``agent.api.Agent`` when ``None``.
        store: The database; from ``settings`` when ``None``.
        throttle: Sign-in throttling; by default from ``settings.server`` (5 failures per (user name,
            address), 20 per user name from addresses with failures, 20 per address, then exponential backoff:
            ``zebra_web.ratelimit``).
        password_checks: Cap on password checks at once, server-wide; by default from ``settings.server``
            (4, waiting up to 10 s).
        agent_concurrency: Questions answered at once.
        intake_timeout_s: Longest parse of one upload.
        migrate: Bring the database schema to head first.
        max_body_bytes: Largest request body except uploads, counted as it is received; when ``None``,
            ``settings.server.max_body_bytes`` (1 MiB by default). Uploads may be as large
            as ``server.max_upload_bytes`` plus their multipart framing.

    Returns:
        The ASGI application.
    """
    from zebra_intake.salt import load_or_create_salt

    settings = settings or get_settings()
    data_dir = Path(settings.data_dir)
    # Patient images, chats and the database live here: readable by the server's user only.
    for folder in (data_dir, data_dir / "studies", data_dir / "web", data_dir / "web" / "incoming"):
        private_dir(folder)
    store = store or Store.from_settings(settings)
    if migrate:
        store.upgrade()
    roots = _evidence_roots(settings)
    ctx = AppContext(
        settings=settings,
        store=store,
        agent=AgentAdapter(agent_factory or default_agent_factory(settings), concurrency=agent_concurrency),
        throttle=throttle
        or LoginThrottle(
            free_failures=settings.server.login_free_failures,
            free_failures_per_user=settings.server.login_free_failures_per_user,
            free_failures_per_ip=settings.server.login_free_failures_per_address,
        ),
        password_checks=password_checks
        or PasswordCheckSlots(settings.server.password_check_slots, settings.server.password_check_wait_s),
        overlays=OverlayStore(
            data_dir / "web", search_roots=roots, agent_heatmaps=data_dir / "web" / "agent-heatmaps"
        ),
        salt=load_or_create_salt(data_dir),
        intake_timeout_s=intake_timeout_s,
        inflight=UserInflight(settings.server.max_inflight_per_user),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {}
        # Let answers in progress finish storing (they survive client disconnects), briefly.
        if ctx.background:
            await asyncio.wait(list(ctx.background), timeout=30)

    app = FastAPI(
        title="Zebra",
        version="0.1.0",
        description=API_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.zebra = ctx
    _install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(studies.router)
    app.include_router(sessions.router)
    app.include_router(users.router)
    app.include_router(kb.router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    server = settings.server
    app.add_middleware(
        SecurityMiddleware,
        store=store,
        max_body_bytes=max_body_bytes or server.max_body_bytes,
        max_upload_body_bytes=body_allowance(server.max_upload_bytes, server.max_upload_files),
        forwarded=ForwardedResolver.from_settings(server.trusted_proxies),
        allowed_hosts=_allowed_hosts(settings),
        hsts_max_age_s=server.hsts_max_age_s,
    )
    return app
