"""Everything a request needs, built once per app by :func:`zebra_web.app.create_app` (no module globals)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from store import Store
from zebra.config import Settings
from zebra_web.agent_adapter import AgentAdapter
from zebra_web.auth import AuthedUser
from zebra_web.errors import AuthenticationError
from zebra_web.inflight import AsyncSlots, UserInflight
from zebra_web.overlays import OverlayStore
from zebra_web.ratelimit import LoginThrottle, PasswordCheckSlots
from zebra_web.uploads import PendingUploads


@dataclass
class AppContext:
    """Per-app state.

    Attributes:
        settings: Zebra's settings.
        store: The database.
        agent: The diagnostic agent behind its adapter.
        throttle: Sign-in rate limiting.
        password_checks: Cap on password checks running at once, server-wide.
        overlays: Heatmap/box overlays and evidence thumbnails.
        salt: The de-identification salt (read once).
        intake_timeout_s: Longest time one upload may take to parse.
        intake_slots: Uploads parsed at once (waited for on the event loop).
        inflight: Questions and uploads in flight per user (429 past ``server.max_inflight_per_user``).
        images_per_question: Most images of a study sent to the agent per question.
        background: Answer tasks still running (kept referenced until done).
        pending_uploads: Uploads to chat sessions still being received or de-identified.
        pending_upload_wait_s: Longest a question waits for such an upload before it is refused (409).
    """

    settings: Settings
    store: Store
    agent: AgentAdapter
    throttle: LoginThrottle
    overlays: OverlayStore
    salt: bytes
    password_checks: PasswordCheckSlots = field(default_factory=PasswordCheckSlots)
    intake_timeout_s: float = 120.0
    intake_slots: AsyncSlots = field(default_factory=lambda: AsyncSlots(2))
    inflight: UserInflight = field(default_factory=lambda: UserInflight(4))
    images_per_question: int = 4
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    pending_uploads: PendingUploads = field(default_factory=PendingUploads)
    pending_upload_wait_s: float = 10.0

    @property
    def data_dir(self) -> Path:
        """The data directory."""
        return Path(self.settings.data_dir)

    @property
    def upload_tmp(self) -> Path:
        """Where uploads are received before parsing (deleted right after)."""
        path = self.data_dir / "web" / "incoming"
        path.mkdir(parents=True, exist_ok=True)
        return path


def get_context(request: Request) -> AppContext:
    """FastAPI dependency: the app's context."""
    return request.app.state.zebra


def current_user(request: Request) -> AuthedUser:
    """FastAPI dependency: the signed-in user, set by the authentication gate.

    Raises:
        AuthenticationError: When the gate did not run or found no user (defence in depth).
    """
    user = getattr(request.state, "user", None)
    if not isinstance(user, AuthedUser):
        raise AuthenticationError("Not signed in.", hint="Sign in first (POST /api/auth/login).")
    return user
