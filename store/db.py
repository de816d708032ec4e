"""Engines and sessions for SQLite and PostgreSQL, and the :class:`Store` facade used by the rest of Zebra."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import ExceptionContext
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from store.errors import InvalidDatabaseURLError, StoreUnreachableError

if TYPE_CHECKING:
    from zebra.config import Settings

log = logging.getLogger(__name__)

#: How long SQLite waits for a competing writer before "database is locked", in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long PostgreSQL connection attempts may take, in seconds.
PG_CONNECT_TIMEOUT_S = 10
_SUPPORTED = ("sqlite", "postgresql")
#: Execution option read by the SQLite "begin" hook: ``DEFERRED`` (default) or ``IMMEDIATE``.
_SQLITE_BEGIN_OPTION = "zebra_sqlite_begin"


def normalise_url(url: str | URL) -> URL:
    """Parses ``url`` and picks psycopg 3 for PostgreSQL.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``; an explicit driver is kept.

    Raises:
        InvalidDatabaseURLError: When the URL cannot be parsed or is neither SQLite nor PostgreSQL.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise InvalidDatabaseURLError(
            f"Cannot parse the database URL {_mask_text(str(url))!r}.",
            hint="Use sqlite:///path/to/zebra.db or postgresql://user:password@host:5432/dbname.",
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "postgres" or (backend == "postgresql" and "+" not in parsed.drivername):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in _SUPPORTED:
        raise InvalidDatabaseURLError(
            f"Unsupported database backend {parsed.get_backend_name()!r} in {mask_url(parsed)}.",
            hint="Zebra supports SQLite (sqlite:///...) and PostgreSQL (postgresql://...).",
        )
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL as text with its password replaced by ``***``; safe for logs and error messages."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return _mask_text(str(url))
    return parsed.render_as_string(hide_password=True)


def _mask_text(text: str) -> str:
    # Best effort for strings that are not parseable URLs: hide anything between "user:" and "@".
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", text)


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_engine_for(url: str | URL, echo: bool = False) -> Engine:
    """Creates an engine configured for Zebra's use of SQLite or PostgreSQL.

    SQLite connections get WAL journalling (readers do not block the writer), enforced foreign keys, a busy
    timeout and ``check_same_thread=False`` (the web server shares the pool across threads); an in-memory
    database uses one shared connection so every session sees the same data. PostgreSQL uses psycopg 3 with
    pre-ping. Any failure to connect, now or later, raises :class:`StoreUnreachableError` naming the URL
    without its password.

    Args:
        url: SQLAlchemy URL; ``postgresql://`` is rewritten to ``postgresql+psycopg://``.
        echo: Log every SQL statement (debugging).

    Raises:
        InvalidDatabaseURLError: When the URL is malformed or names another backend.
    """
    parsed = normalise_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    _private_sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if _is_memory_sqlite(parsed):
            kwargs["poolclass"] = StaticPool
    else:
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    event.listen(engine, "handle_error", _connect_error_handler(parsed))
    log.debug("engine created for %s", mask_url(parsed))
    return engine


def _private_sqlite_file(url: URL) -> None:
    """Creates the SQLite file readable by its owner only (0600), or makes an existing one so.

    SQLite creates the file with the process umask (usually 0644: every local user could read the
    studies' metadata and the chats) and gives its ``-wal`` and ``-shm`` files the same mode.
    """
    if url.get_backend_name() != "sqlite" or _is_memory_sqlite(url) or str(url.database).startswith("file:"):
        return
    path = Path(str(url.database))
    try:
        if path.parent.is_dir():
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if candidate.exists() and (candidate.stat().st_mode & 0o077):
                    os.chmod(candidate, 0o600)
    except OSError as exc:  # a read-only location: SQLite reports the real problem on connect
        log.debug("could not make %s private: %s", path.name, exc)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite only emits BEGIN before INSERT/UPDATE/DELETE, so a SAVEPOINT opened after a SELECT starts
    # and, on release, commits its own transaction behind the session's back. Take over: no implicit
    # BEGIN from the driver, an explicit one from SQLAlchemy's "begin" event (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL needs a file; an in-memory database silently stays in "memory" mode.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows (a deleted study, a purged one) are overwritten, not left in free pages of the file.
        cursor.execute("PRAGMA secure_delete=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_SQLITE_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _connect_error_handler(url: URL) -> Any:
    masked = mask_url(url)
    password = url.password

    def handle(context: ExceptionContext) -> BaseException | None:
        # connection is None only while establishing a connection; later errors are the caller's business.
        if context.connection is not None or context.is_pre_ping:
            return None
        reason = str(context.original_exception).strip().splitlines()[0] if context.original_exception else ""
        if password:
            reason = reason.replace(str(password), "***")
        if url.get_backend_name() == "sqlite":
            hint = "Check that the folder exists and is writable, or set ZEBRA_STORE__URL."
        else:
            hint = (
                "Check that the server is running and accepts connections, and that host, port, user, "
                "password and database name are right (ZEBRA_STORE__URL or --url)."
            )
        return StoreUnreachableError(f"Cannot reach database at {masked} ({reason}).", hint=hint)

    return handle


class Store:
    """One database: its engine, a session factory and its migrations.

    Args:
        url: SQLAlchemy URL (SQLite or PostgreSQL).
        echo: Log SQL statements.

    Example::

        store = Store("sqlite:///:memory:")
        store.upgrade()
        with store.session() as s:
            s.add(User(username="ada", password_hash="..."))
    """

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self._url = normalise_url(url)
        self._engine = create_engine_for(self._url, echo=echo)
        self._sessionmaker = sessionmaker(bind=self._engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Store:
        """The store named by the settings (``store.url``, default SQLite at ``<data_dir>/zebra.db``).

        Creates the data directory when missing.
        """
        from zebra.config import get_settings

        settings = settings or get_settings()
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        return cls(settings.database_url, echo=settings.store.echo)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine."""
        return self._engine

    @property
    def url(self) -> URL:
        """The normalised URL (contains the password; never log it, use :attr:`safe_url`)."""
        return self._url

    @property
    def safe_url(self) -> str:
        """The URL with its password masked."""
        return mask_url(self._url)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """The session factory (``expire_on_commit=False``, so objects stay readable after commit)."""
        return self._sessionmaker

    @contextmanager
    def session(self, *, immediate: bool = False) -> Iterator[Session]:
        """A session in a transaction: committed when the block succeeds, rolled back when it raises.

        Args:
            immediate: On SQLite, take the write lock when the transaction starts (``BEGIN IMMEDIATE``).
                Use it for read-then-write transactions (claiming work items): a deferred transaction that
                read before another writer committed fails with "database is locked" at its first write
                instead of waiting. Ignored on PostgreSQL, where ``SELECT ... FOR UPDATE`` is the tool.
        """
        session = self._sessionmaker()
        try:
            if immediate and self.dialect == "sqlite":
                session.connection(execution_options={_SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Opens a connection and runs ``SELECT 1``.

        Raises:
            StoreUnreachableError: When the database cannot be reached.
        """
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def upgrade(self, revision: str = "head") -> str | None:
        """Runs the Alembic migrations up to ``revision``; returns the revision the database is then at."""
        from store import migrate

        return migrate.upgrade(self._engine, revision)

    def current_revision(self) -> str | None:
        """The database's Alembic revision, or ``None`` for a database never migrated."""
        from store import migrate

        return migrate.current_revision(self._engine)

    def head_revision(self) -> str:
        """The newest revision this version of Zebra ships."""
        from store import migrate

        return migrate.head_revision()

    def check(self) -> str:
        """Verifies the schema is at head and returns that revision.

        Raises:
            StoreNotMigratedError: When the database is empty, behind, or at an unknown revision.
            StoreUnreachableError: When it cannot be reached.
        """
        from store import migrate

        return migrate.check(self._engine, self.safe_url)

    def checkpoint(self) -> None:
        """SQLite: copies the write-ahead log into the database file and empties it (after deletions, so the
        log keeps no old copy of deleted rows). PostgreSQL: nothing. Best effort: busy readers may delay it.
        """
        if self.dialect != "sqlite" or _is_memory_sqlite(self._url):
            return
        with self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def dispose(self) -> None:
        """Closes every pooled connection."""
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.safe_url!r})"
