"""Starting the server: first administrator, app, uvicorn (used by ``zebra serve`` and ``python -m zebra_web``)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from zebra.config import Settings

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    echo: Callable[[str], None],
    agent_factory: Any = None,
    access_log: bool = True,
    build_knowledge_base: bool = True,
) -> None:
    """Migrates the database, creates the first administrator if needed, and serves until interrupted.

    Args:
        settings: Zebra's settings.
        host: Address to listen on.
        port: TCP port.
        echo: Prints a line for the operator (the generated administrator password goes through it once).
        agent_factory: Passed to :func:`zebra_web.app.create_app`.
        access_log: Log one line per request (paths and status only; never bodies or file names).
        build_knowledge_base: Start building a missing or out-of-date default knowledge base in a background
            process (:mod:`index_builder.background`) so the page is served at once; questions wait for it meanwhile.
    """
    import uvicorn

    from store import Store
    from zebra_web.app import create_app
    from zebra_web.users import ensure_initial_admin

    store = Store.from_settings(settings)
    store.upgrade()
    admin = ensure_initial_admin(store, settings.data_dir)
    if admin is not None and admin.password is not None:
        echo(
            f"Created the first administrator '{admin.username}' with password: {admin.password}\n"
            f"(shown once; also saved to {admin.password_file}, readable only by you). "
            "Create more users with: zebra user add NAME"
        )
    elif admin is not None:
        echo(
            f"Created the first administrator '{admin.username}' from ZEBRA_ADMIN_USER/ZEBRA_ADMIN_PASSWORD."
        )
    if build_knowledge_base:
        from index_builder.background import start_background_build

        status = start_background_build(settings)
        if not status.ready:
            echo(
                f"{status.message()} It builds in the background (log: {settings.data_dir / 'kb-build.log'}); "
                "the page works meanwhile and shows its progress."
            )
    if not is_loopback(host):
        echo(
            f"warning: listening on {host}, not only on this machine; the server speaks plain HTTP. "
            "Put it behind a TLS reverse proxy before anyone else uses it."
        )
    app = create_app(settings, store=store, agent_factory=agent_factory, migrate=False)
    echo(f"Zebra is running on http://{host}:{port}  (research use only; Ctrl+C stops it)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=access_log,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
