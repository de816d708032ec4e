"""CLI commands of the web app: ``zebra serve``, ``zebra user add|list|passwd|disable|enable|revoke|delete``,
``zebra bench chat``."""

from __future__ import annotations

import logging
import os

import typer

from zebra_cli.app import app, bench_app

log = logging.getLogger(__name__)

user_app = typer.Typer(help="User accounts of the web app.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@app.command("serve")
def serve_cmd(
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: server.host, 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, "--port", help="TCP port (default: server.port, 8000)."),
    build_kb: bool = typer.Option(
        True,
        "--build-kb/--no-build-kb",
        help="Build a missing default knowledge base in the background while serving (progress on the page).",
    ),
) -> None:
    """Start the web app for radiologists (sign in, upload a study, ask questions)."""
    from zebra.config import get_settings
    from zebra_web.server import run_server

    settings = get_settings()
    run_server(
        settings,
        host=host or settings.server.host,
        port=port or settings.server.port,
        echo=typer.echo,
        build_knowledge_base=build_kb,
    )


@user_app.command("add")
def user_add_cmd(
    name: str = typer.Argument(..., help="User name (letters, digits, '.', '_', '@', '-')."),
    admin: bool = typer.Option(False, "--admin", help="May create users in the web app."),
) -> None:
    """Create a user. The password is read from ZEBRA_ADMIN_PASSWORD, or asked for (twice)."""
    from store import Store
    from zebra.config import get_settings
    from zebra_web.users import create_user

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
    from zebra_web.users import list_users

    for user in list_users(_user_store()):
        flags = ", ".join(f for f, on in (("admin", user.is_admin), ("disabled", not user.is_active)) if on)
        typer.echo(f"{user.id}\t{user.username}" + (f"\t({flags})" if flags else ""))


def _user_store():  # -> store.Store
    from store import Store
    from zebra.config import get_settings

    store = Store.from_settings(get_settings())
    store.upgrade()
    return store


@user_app.command("passwd")
def user_passwd_cmd(
    name: str = typer.Argument(..., help="User name."),
    generate: bool = typer.Option(
        False, "--generate", help="Generate a random password and print it once (e.g. to rotate the admin's)."
    ),
) -> None:
    """Set a user's password (ZEBRA_ADMIN_PASSWORD, asked twice, or --generate); signs them out everywhere."""
    import secrets

    from zebra_web.users import set_password

    if generate:
        password = secrets.token_urlsafe(18)
    else:
        password = os.environ.get("ZEBRA_ADMIN_PASSWORD") or typer.prompt(
            f"New password for {name}", hide_input=True, confirmation_prompt=True
        )
    from zebra.config import get_settings

    set_password(_user_store(), name, password, data_dir=get_settings().data_dir)
    typer.echo(f"Password of {name!r} changed; their sessions were signed out.")
    if generate:
        typer.echo(f"New password (shown once): {password}")


@user_app.command("disable")
def user_disable_cmd(name: str = typer.Argument(..., help="User name.")) -> None:
    """Stop a user from signing in, and sign them out everywhere (their data stays)."""
    from zebra_web.users import set_active

    set_active(_user_store(), name, False)
    typer.echo(f"Disabled {name!r} and signed them out.")


@user_app.command("enable")
def user_enable_cmd(name: str = typer.Argument(..., help="User name.")) -> None:
    """Let a disabled user sign in again."""
    from zebra_web.users import set_active

    set_active(_user_store(), name, True)
    typer.echo(f"Enabled {name!r}.")


@user_app.command("revoke")
def user_revoke_cmd(name: str = typer.Argument(..., help="User name.")) -> None:
    """Sign a user out everywhere (every session and API token)."""
    from zebra_web.users import revoke_sessions

    n = revoke_sessions(_user_store(), name)
    typer.echo(f"Signed {name!r} out of {n} session(s).")


@user_app.command("delete")
def user_delete_cmd(
    name: str = typer.Argument(..., help="User name."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Delete a user with their studies (files too), chats and sessions. Cannot be undone."""
    from zebra.config import get_settings
    from zebra_web.users import delete_user

    if not yes:
        typer.confirm(f"Delete {name!r} with all their studies and chats?", abort=True)
    delete_user(_user_store(), get_settings().data_dir, name)
    typer.echo(f"Deleted {name!r} and their data.")


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
    from zebra_web.bench import bench_chat, format_result

    admin = None
    if os.environ.get("ZEBRA_ADMIN_USER") and os.environ.get("ZEBRA_ADMIN_PASSWORD"):
        admin = (os.environ["ZEBRA_ADMIN_USER"], os.environ["ZEBRA_ADMIN_PASSWORD"])
    result = bench_chat(
        get_settings(), users=users, seconds=seconds, url=url, test_agent=test_agent, admin=admin
    )
    typer.echo(format_result(result))
