"""Column types shared by every model: portable across SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

#: Integer primary key that is 64-bit on PostgreSQL but stays ``INTEGER`` on SQLite, where only
#: ``INTEGER PRIMARY KEY`` aliases the rowid and autoincrements.
BigIntPK: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

#: JSON payloads: ``JSONB`` on PostgreSQL (indexable, comparable), ``JSON`` text elsewhere. Python ``None``
#: is stored as SQL ``NULL``, not the JSON literal ``null``.
JSONType: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_uuid() -> str:
    """A random UUID as its 36-character string form."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is converted to UTC and stored
    without offset, and read back as UTC. Naive datetimes are refused: their zone is a guess, and a wrong
    guess silently shifts lease expiries and audit times.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC) or attach a tzinfo")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
