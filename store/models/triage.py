"""Batch triage: a run over a worklist, and its items with leases so several workers can share a run."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.base import Base
from store.types import BigIntPK, JSONType, UTCDateTime, utcnow


class RunStatus(enum.StrEnum):
    """Life cycle of a :class:`TriageRun`."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ItemStatus(enum.StrEnum):
    """Life cycle of a :class:`TriageItem`."""

    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    ERROR = "error"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class TriageRun(Base):
    """One triage job over a worklist against a knowledge bundle."""

    __tablename__ = "triage_runs"
    __table_args__ = (CheckConstraint(_in("status", RunStatus), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: Worklist path or a description of where the items came from.
    worklist: Mapped[str | None] = mapped_column(Text)
    bundle: Mapped[str | None] = mapped_column(String(1024))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.PENDING.value, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    owner_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    items: Mapped[list[TriageItem]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )


class TriageItem(Base):
    """One study of a run. A worker leases it (``lease_owner`` until ``lease_expires_at``) before working."""

    __tablename__ = "triage_items"
    __table_args__ = (
        UniqueConstraint("run_id", "item_key"),
        Index(None, "run_id", "status"),
        Index(None, "status", "lease_expires_at"),
        CheckConstraint(_in("status", ItemStatus), name="status"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("triage_runs.id", ondelete="CASCADE"))
    item_key: Mapped[str] = mapped_column(String(255))
    accession: Mapped[str | None] = mapped_column(String(128))
    study_path: Mapped[str | None] = mapped_column(Text)
    prior_path: Mapped[str | None] = mapped_column(Text)
    history: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.PENDING.value)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    priority: Mapped[float | None] = mapped_column()
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    run: Mapped[TriageRun] = relationship(back_populates="items")
