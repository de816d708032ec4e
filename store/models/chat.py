"""Chat sessions about a study (optionally against a prior) and their messages."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.base import Base
from store.types import BigIntPK, JSONType, UTCDateTime, new_uuid, utcnow

if TYPE_CHECKING:
    from store.models.accounts import User
    from store.models.imaging import Study


class ChatRole(enum.StrEnum):
    """Author of a :class:`ChatMessage`."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class ChatSession(Base):
    """A conversation of one user, optionally about a study and a prior study of the same patient."""

    __tablename__ = "chat_sessions"
    __table_args__ = (Index(None, "user_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(String(200))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"), index=True)
    prior_study_id: Mapped[int | None] = mapped_column(
        ForeignKey("studies.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="chat_sessions")
    study: Mapped[Study | None] = relationship(foreign_keys=[study_id])
    prior_study: Mapped[Study | None] = relationship(foreign_keys=[prior_study_id])
    messages: Mapped[list[ChatMessage]] = relationship(
        back_populates="session",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ChatMessage.id",
    )


class ChatMessage(Base):
    """One message; ``payload`` carries structured output (citations, differential, abstention reason)."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        Index(None, "session_id", "created_at"),
        CheckConstraint(f"role IN ({', '.join(repr(r.value) for r in ChatRole)})", name="role"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    session: Mapped[ChatSession] = relationship(back_populates="messages")
