"""Every Zebra table. Importing this package registers all of them on :data:`store.base.Base.metadata`."""

from __future__ import annotations

from store.models.accounts import AuditEvent, AuthToken, User
from store.models.chat import ChatMessage, ChatRole, ChatSession
from store.models.imaging import Image, Patient, Series, Study
from store.models.knowledge import KnowledgeChunk, KnowledgeDocument
from store.models.triage import ItemStatus, RunStatus, TriageItem, TriageRun

__all__ = [
    "AuditEvent",
    "AuthToken",
    "ChatMessage",
    "ChatRole",
    "ChatSession",
    "Image",
    "ItemStatus",
    "KnowledgeChunk",
    "KnowledgeDocument",
    "Patient",
    "RunStatus",
    "Series",
    "Study",
    "TriageItem",
    "TriageRun",
    "User",
]
