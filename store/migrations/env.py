"""Alembic environment: runs on the connection handed over in ``config.attributes["connection"]``.

Without one (plain ``alembic`` command line), it connects to ``sqlalchemy.url`` from the config, or to the
database named by Zebra's settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import store.models  # noqa: F401  (registers every table on the metadata)
from store.base import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from store.db import Store, create_engine_for

    url = config.get_main_option("sqlalchemy.url")
    engine = create_engine_for(url) if url else Store.from_settings().engine
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    _run_online()
