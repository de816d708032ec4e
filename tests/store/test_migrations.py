"""Alembic: the initial migration creates exactly the models' schema; check/current track the revision."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, text

from store import Base, Store, StoreNotMigratedError
from store.migrate import alembic_config, head_revision
from zebra.errors import StoreError


def _diff(store: Store, metadata: MetaData) -> list[object]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))


def test_upgrade_head_matches_models_exactly(empty_store: Store) -> None:
    assert empty_store.current_revision() is None
    assert empty_store.upgrade() == head_revision() == "0001"
    assert _diff(empty_store, Base.metadata) == []
    tables = set(inspect(empty_store.engine).get_table_names())
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


def test_compare_detects_a_drifted_model(store: Store) -> None:
    # Proves the no-diff assertion above has teeth: a column missing from the migration is reported.
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["patients"].append_column(Column("extra", Integer, nullable=True))
    diff = _diff(store, drifted)
    assert any(d[0] == "add_column" and d[3].name == "extra" for d in diff if isinstance(d, tuple))


def test_upgrade_is_idempotent_and_downgrade_removes_everything(store: Store) -> None:
    assert store.upgrade() == "0001"  # already at head: no-op
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert store.current_revision() is None
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    assert store.upgrade() == "0001"
    assert _diff(store, Base.metadata) == []


def test_check_fails_before_upgrade_and_passes_after(empty_store: Store) -> None:
    with pytest.raises(StoreNotMigratedError) as err:
        empty_store.check()
    assert isinstance(err.value, StoreError)
    assert "no Zebra schema" in err.value.message
    assert "zebra db upgrade" in (err.value.hint or "")
    empty_store.upgrade()
    assert empty_store.check() == "0001"


def test_check_rejects_unknown_revision(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    assert store.current_revision() == "ffff_future"
    with pytest.raises(StoreNotMigratedError, match="unknown to this version"):
        store.check()


def test_migrations_are_found_through_the_package() -> None:
    # script_location is "package:folder", so an installed wheel finds them without a checkout or alembic.ini.
    from importlib import resources

    cfg = alembic_config()
    assert cfg.get_main_option("script_location") == "store:migrations"
    folder = resources.files("store") / "migrations"
    assert (folder / "env.py").is_file()
    assert (folder / "script.py.mako").is_file()
    assert (folder / "versions" / "0001_initial.py").is_file()
