"""CLI commands of the web app: ``zebra serve``, ``zebra user add|list``, ``zebra bench chat``."""

from __future__ import annotations

import logging
import os

import typer

from zebra.cli.app import app, bench_app

log = logging.getLogger(__name__)

user_app = typer.Typer(help="User accounts of the web app.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@app.command("serve")
def serve_cmd(
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: server.host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, "--port", help="TCP port (default: server.port, 8000)."),
) -> None:
    """Start the web app for radiologists (sign in, upload a study, ask questions)."""
    from zebra.config import get_settings
    from zebra.web.server import run_server

    settings = get_settings()
    run_server(
        settings,
        host=host or settings.server.host,
        port=port or settings.server.port,
        echo=typer.echo,
    )


@user_app.command("add")
def user_add_cmd(
    name: str = typer.Argument(..., help="User name (letters, digits, '.', '_', '@', '-')."),
    admin: bool = typer.Option(False, "--admin", help="May create users in the web app."),
) -> None:
    """Create a user. The password is read from ZEBRA_ADMIN_PASSWORD, or asked for (twice)."""
    from store import Store
    from zebra.config import get_settings
    from zebra.web.users import create_user

    password = os.environ.get("ZEBRA_ADMIN_PASSWORD") or typer.prompt(
        f"Password for {name}", hide_input=True, confirmation_prompt=True
    )
    store = Store.from_settings(get_settings())
    store.upgrade()
    user_id = create_user(store, name, password, is_admin=admin)
    typer.echo(f"Created {'administrator' if admin else 'user'} {name!r} (id {user_id}).")


@user_app.command("list")
def user_list_cmd() -> None:
    """List users (name, administrator, active)."""
    from sqlalchemy import select

    from store import Store, User
    from zebra.config import get_settings

    store = Store.from_settings(get_settings())
    store.upgrade()
    with store.session() as s:
        for user in s.scalars(select(User).order_by(User.id)):
            flags = ", ".join(
                f for f, on in (("admin", user.is_admin), ("disabled", not user.is_active)) if on
            )
            typer.echo(f"{user.id}\t{user.username}" + (f"\t({flags})" if flags else ""))


@bench_app.command("chat")
def bench_chat_cmd(
    users: int = typer.Option(20, "--users", min=1, max=500, help="Concurrent simulated users."),
    seconds: float = typer.Option(60.0, "--seconds", min=1.0, help="How long they ask questions."),
    url: str | None = typer.Option(
        None, "--url", help="A running server on this machine (default: start one)."
    ),
    test_agent: bool = typer.Option(
        False, "--test-agent", help="The started server uses the scripted test agent (web stack alone)."
    ),
) -> None:
    """Simulated radiologists upload a study and ask questions; prints JSON (errors, answer latency p50/p95/p99)."""
    from zebra.config import get_settings
    from zebra.web.bench import bench_chat, format_result

    admin = None
    if os.environ.get("ZEBRA_ADMIN_USER") and os.environ.get("ZEBRA_ADMIN_PASSWORD"):
        admin = (os.environ["ZEBRA_ADMIN_USER"], os.environ["ZEBRA_ADMIN_PASSWORD"])
    result = bench_chat(
        get_settings(), users=users, seconds=seconds, url=url, test_agent=test_agent, admin=admin
    )
    typer.echo(format_result(result))
