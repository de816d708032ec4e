"""The web app for radiologists: sign in, upload a study, ask the diagnostic agent in a chat.

Use :func:`create_app` (FastAPI) or ``zebra serve``. See ``docs/web.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the intake worker process can import zebra_web.intake_worker without FastAPI.
    if name == "create_app":
        from zebra_web.app import create_app

        return create_app
    raise AttributeError(name)
