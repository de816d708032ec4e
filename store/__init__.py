"""Persistence: SQLAlchemy models, engine and sessions (:class:`Store`), Alembic migrations.

Works on SQLite (default, ``<data_dir>/zebra.db``) and PostgreSQL. Alembic is only imported when
migrations are run.
"""

from __future__ import annotations

from store.base import Base
from store.db import Store, create_engine_for, mask_url, normalise_url
from store.errors import InvalidDatabaseURLError, StoreNotMigratedError, StoreUnreachableError
from store.models import (
    AuditEvent,
    AuthToken,
    ChatMessage,
    ChatRole,
    ChatSession,
    Image,
    ItemStatus,
    KnowledgeChunk,
    KnowledgeDocument,
    Patient,
    RunStatus,
    Series,
    Study,
    TriageItem,
    TriageRun,
    User,
)
from store.types import utcnow

__all__ = [
    "AuditEvent",
    "AuthToken",
    "Base",
    "ChatMessage",
    "ChatRole",
    "ChatSession",
    "Image",
    "InvalidDatabaseURLError",
    "ItemStatus",
    "KnowledgeChunk",
    "KnowledgeDocument",
    "Patient",
    "RunStatus",
    "Series",
    "Store",
    "StoreNotMigratedError",
    "StoreUnreachableError",
    "Study",
    "TriageItem",
    "TriageRun",
    "User",
    "create_engine_for",
    "mask_url",
    "normalise_url",
    "utcnow",
]
