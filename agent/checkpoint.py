"""Session memory: LangGraph checkpointers.

SQLite (``langgraph-checkpoint-sqlite``) at ``<data_dir>/agent/checkpoints.sqlite`` by default; PostgreSQL
(``langgraph-checkpoint-postgres``, an optional package) when the store URL is PostgreSQL and the package is
installed. Each thread id is one session; the state of its last step is what a follow-up question sees.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from agent.errors import AgentConfigError

log = logging.getLogger(__name__)


def default_path() -> Path:
    """``<data_dir>/agent/checkpoints.sqlite``."""
    from zebra.config import get_settings

    return get_settings().data_dir / "agent" / "checkpoints.sqlite"


def sqlite_saver(path: str | Path | None = None) -> Any:
    """A :class:`langgraph.checkpoint.sqlite.SqliteSaver` on ``path`` (created with its folder)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path).expanduser() if path else default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # one connection shared by the threads of a server; SqliteSaver serialises access with its own lock
    conn = sqlite3.connect(str(path), check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def postgres_saver(url: str) -> Any:
    """A PostgreSQL checkpointer (needs ``langgraph-checkpoint-postgres``).

    Raises:
        AgentConfigError: When the package is not installed.
    """
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row
    except ImportError as exc:
        raise AgentConfigError(
            "PostgreSQL session memory needs the langgraph-checkpoint-postgres package.",
            hint="pip install 'zebra-dx[postgres]', or use the SQLite checkpointer.",
        ) from exc
    dsn = url.replace("postgresql+psycopg://", "postgresql://").replace(
        "postgresql+psycopg2://", "postgresql://"
    )
    conn = Connection.connect(dsn, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    saver = PostgresSaver(conn)
    saver.setup()
    return saver


def default_checkpointer() -> Any:
    """PostgreSQL when the store is PostgreSQL and the package is installed, else SQLite (module docstring)."""
    from zebra.config import get_settings

    url = get_settings().database_url
    if url.startswith("postgresql"):
        try:
            return postgres_saver(url)
        except AgentConfigError:
            log.info("langgraph-checkpoint-postgres not installed; sessions use SQLite")
    return sqlite_saver()
