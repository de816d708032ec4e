"""Alembic, configured in code so migrations run from an installed package without an ``alembic.ini``."""

from __future__ import annotations

import logging

# Alembic logs every plugin (at import) and every step at INFO; keep that out of CLI output unless the
# user configured the "alembic" logger. Must run before alembic is imported.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from store.errors import StoreNotMigratedError

log = logging.getLogger(__name__)

#: ``package:folder`` form so Alembic finds the scripts wherever the package is installed.
SCRIPT_LOCATION = "store:migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations.

    Args:
        connection: When given, ``env.py`` runs the migrations on it (``config.attributes["connection"]``).
    """
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StoreNotMigratedError("No migrations are packaged.", hint="Reinstall Zebra.")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in the database, or ``None`` when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrades the database to ``revision`` and returns the revision it is then at."""
    before = current_revision(engine)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    after = current_revision(engine)
    if after != before:
        log.info("database upgraded from %s to %s", before or "<empty>", after)
    return after


def check(engine: Engine, safe_url: str) -> str:
    """Raises :class:`StoreNotMigratedError` unless the database is at head; returns the head revision."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return head
    if current is None:
        message = f"The database at {safe_url} has no Zebra schema yet."
    else:
        known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        if current not in known:
            raise StoreNotMigratedError(
                f"The database at {safe_url} is at revision {current}, unknown to this version of Zebra "
                f"(newest known: {head}).",
                hint="Upgrade Zebra, or point it at another database.",
            )
        message = f"The database at {safe_url} is at revision {current}, but this Zebra needs {head}."
    raise StoreNotMigratedError(message, hint="Run `zebra db upgrade` (add --url when not using settings).")
