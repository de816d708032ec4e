"""Engines, URLs, sessions and connection errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from store import (
    InvalidDatabaseURLError,
    Patient,
    Store,
    StoreUnreachableError,
    create_engine_for,
    mask_url,
    normalise_url,
)
from zebra.config import get_settings
from zebra.errors import StoreError

PASSWORD = "s3cr3t-Pa55"
# Port 1 on loopback refuses at once: no waiting for a timeout.
UNREACHABLE = f"postgresql://zebra:{PASSWORD}@127.0.0.1:1/zebra"


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgres://u:p@h:5433/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2"),  # an explicit driver is kept
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_normalise_url_picks_psycopg3(given: str, driver: str) -> None:
    url = normalise_url(given)
    assert url.drivername == driver
    assert url.database in ("db", "x.db")


@pytest.mark.parametrize("bad", ["mysql://u:p@h/db", "not a url at all"])
def test_unsupported_or_malformed_urls(bad: str) -> None:
    with pytest.raises(InvalidDatabaseURLError) as err:
        Store(bad)
    assert isinstance(err.value, StoreError) and err.value.hint
    assert ":p@" not in str(err.value)


def test_mask_url_hides_password() -> None:
    masked = mask_url(UNREACHABLE)
    assert PASSWORD not in masked and "zebra:***@127.0.0.1:1" in masked
    assert PASSWORD not in repr(Store(UNREACHABLE))  # building a Store does not connect


def test_unreachable_postgres_is_a_clear_store_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = Store(UNREACHABLE)
    for action in (store.ping, store.check, store.upgrade, store.current_revision):
        with pytest.raises(StoreUnreachableError) as err:
            action()
        text_ = str(err.value)
        assert isinstance(err.value, StoreError)
        assert "Cannot reach database at postgresql+psycopg://zebra:***@127.0.0.1:1/zebra" in text_
        assert PASSWORD not in text_
        assert "server is running" in (err.value.hint or "")
    assert PASSWORD not in caplog.text


def test_session_errors_on_unreachable_database_are_store_errors() -> None:
    store = Store(UNREACHABLE)
    with pytest.raises(StoreUnreachableError), store.session() as s:
        s.scalar(select(func.count()).select_from(Patient))


def test_sqlite_in_missing_folder_is_a_store_error(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'zebra.db'}")
    with pytest.raises(StoreUnreachableError, match="Cannot reach database") as err:
        store.ping()
    assert "folder exists" in (err.value.hint or "")


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'z.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.commit()
            assert (tmp_path / "z.db-wal").exists()  # writes go to the write-ahead log
    finally:
        engine.dispose()


def test_sqlite_connections_may_cross_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = Store(f"sqlite:///{tmp_path / 'z.db'}")
    store.upgrade()
    with store.session() as s:
        s.add(Patient(pseudo_id="P1"))
    # A pooled connection made on this thread is reused by another one (check_same_thread=False).
    with ThreadPoolExecutor(max_workers=1) as pool:
        count = pool.submit(
            lambda: store.engine.connect().execute(text("SELECT count(*) FROM patients")).scalar()
        )
        assert count.result(timeout=30) == 1
    store.dispose()


def test_in_memory_sqlite_is_shared_by_sessions() -> None:
    store = Store("sqlite:///:memory:")
    store.upgrade()
    with store.session() as s:
        s.add(Patient(pseudo_id="P-mem"))
    with store.session() as s:
        assert s.scalar(select(Patient.pseudo_id)) == "P-mem"
    store.check()


def test_from_settings_uses_data_dir(zebra_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nested = zebra_env / "not" / "yet"
    monkeypatch.setenv("ZEBRA_DATA_DIR", str(nested))
    get_settings.cache_clear()
    store = Store.from_settings()
    assert nested.is_dir()  # created
    assert store.url.database == str(nested / "zebra.db")
    store.upgrade()
    assert (nested / "zebra.db").is_file()
    store.dispose()

    other = zebra_env / "custom.db"
    monkeypatch.setenv("ZEBRA_STORE__URL", f"sqlite:///{other}")
    get_settings.cache_clear()
    assert Store.from_settings().url.database == str(other)


def test_session_commits_on_success_and_rolls_back_on_error(store: Store) -> None:
    with store.session() as s:
        s.add(Patient(pseudo_id="kept"))
    with pytest.raises(RuntimeError), store.session() as s:
        s.add(Patient(pseudo_id="discarded"))
        s.flush()  # reaches the database, then must be undone
        raise RuntimeError("boom")
    with store.session() as s:
        assert list(s.scalars(select(Patient.pseudo_id))) == ["kept"]
        # expire_on_commit=False: objects stay readable after the block.
    with store.session() as s:
        p = Patient(pseudo_id="after")
        s.add(p)
    assert p.pseudo_id == "after" and p.id is not None


def test_savepoint_is_undone_by_outer_rollback(store: Store) -> None:
    # On SQLite a SAVEPOINT opened after a plain SELECT used to start (and commit) its own transaction.
    with pytest.raises(RuntimeError), store.session() as s:
        s.scalar(select(func.count()).select_from(Patient))
        with s.begin_nested():
            s.add(Patient(pseudo_id="inner"))
        raise RuntimeError("outer fails")
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 0


def test_immediate_session_takes_the_sqlite_write_lock(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "z.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    other = sqlite3.connect(path, timeout=0)
    try:
        with store.session() as s:  # deferred: reading takes no write lock
            s.scalar(select(func.count()).select_from(Patient))
            other.execute(
                "INSERT INTO users (username, password_hash, is_admin, is_active, created_at) "
                "VALUES ('a', 'h', 0, 1, '2024-01-01 00:00:00')"
            )
            other.commit()
        with store.session(immediate=True) as s:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("UPDATE users SET is_admin = 1")
            other.rollback()
            s.add(Patient(pseudo_id="locked-in"))
        other.execute("UPDATE users SET is_admin = 1")  # lock released on commit
        other.commit()
    finally:
        other.close()
        store.dispose()
