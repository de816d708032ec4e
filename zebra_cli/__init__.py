"""``zebra`` command line. Each module in :data:`COMMAND_MODULES` registers its commands on import."""

from __future__ import annotations

import importlib
import logging
import sys

from zebra.errors import ZebraError
from zebra_cli.app import app

#: Modules that add commands to :data:`zebra_cli.app.app`. Imported lazily by :func:`main`.
COMMAND_MODULES: tuple[str, ...] = (
    "zebra_cli.core",
    "zebra_cli.intake",
    "zebra_cli.datasets",
    "zebra_cli.db",
    "zebra_cli.index",
    "zebra_cli.retrieval",
    "zebra_cli.eval",
    "zebra_cli.agent",
    "zebra_cli.web",
    "zebra_cli.triage",
    "zebra_cli.vlm",
)


def build_app():  # -> typer.Typer
    """Imports every command module and returns the populated application."""
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: typed errors become a message and an exit code, never a traceback."""
    from zebra.config import get_settings
    from zebra.logs import setup_logging

    try:
        setup_logging(get_settings().log_level)
        build_app()(args=argv, standalone_mode=False)
    except ZebraError as exc:
        logging.getLogger("zebra").debug("error", exc_info=True)
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors and aborts
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
