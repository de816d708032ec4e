"""Small typed look-ups that every caller would otherwise rewrite. No business rules live here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from store.models import AuditEvent, KnowledgeChunk, KnowledgeDocument, Patient, Study, User

#: Keeps ``IN (...)`` lists well below every backend's bound-parameter limit.
_IN_BATCH = 500


def get_or_create_patient(
    session: Session, pseudo_id: str, *, sex: str | None = None, age_years: int | None = None
) -> Patient:
    """The patient with this pseudonym, created when new.

    ``sex`` and ``age_years`` are only used on creation. Safe against a concurrent insert of the same
    pseudonym: the loser of the race re-reads the winner's row.

    Raises:
        ValueError: When ``pseudo_id`` is empty.
    """
    if not pseudo_id:
        raise ValueError("pseudo_id must not be empty")
    existing = session.scalar(select(Patient).where(Patient.pseudo_id == pseudo_id))
    if existing is not None:
        return existing
    patient = Patient(pseudo_id=pseudo_id, sex=sex, age_years=age_years)
    try:
        with session.begin_nested():
            session.add(patient)
    except IntegrityError:
        winner = session.scalar(select(Patient).where(Patient.pseudo_id == pseudo_id))
        if winner is None:
            raise
        return winner
    return patient


def get_study_by_uid(session: Session, study_uid: str) -> Study | None:
    """The study with this pseudonymised UID, or ``None``."""
    return session.scalar(select(Study).where(Study.study_uid == study_uid))


def get_user_by_username(session: Session, username: str) -> User | None:
    """The user with this user name (exact match), or ``None``."""
    return session.scalar(select(User).where(User.username == username))


def get_document(session: Session, bundle: str, source: str, doc_key: str) -> KnowledgeDocument | None:
    """The knowledge document identified by its natural key, or ``None``."""
    return session.scalar(
        select(KnowledgeDocument).where(
            KnowledgeDocument.bundle == bundle,
            KnowledgeDocument.source == source,
            KnowledgeDocument.doc_key == doc_key,
        )
    )


def chunks_by_vector_ids(
    session: Session, bundle: str, vector_ids: Iterable[int]
) -> dict[int, KnowledgeChunk]:
    """Maps FAISS vector ids of ``bundle`` to their chunks (document loaded); unknown ids are absent."""
    wanted = sorted({int(v) for v in vector_ids})
    found: dict[int, KnowledgeChunk] = {}
    for start in range(0, len(wanted), _IN_BATCH):
        batch = wanted[start : start + _IN_BATCH]
        rows = session.scalars(
            select(KnowledgeChunk)
            .join(KnowledgeChunk.document)
            .where(KnowledgeDocument.bundle == bundle, KnowledgeChunk.vector_id.in_(batch))
            .options(joinedload(KnowledgeChunk.document))
        )
        for chunk in rows:
            if chunk.vector_id is not None:
                found[chunk.vector_id] = chunk
    return found


def record_audit(
    session: Session,
    action: str,
    *,
    user_id: int | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Adds an audit event to the session (committed with it). ``details`` must hold no patient data."""
    event = AuditEvent(
        action=action,
        user_id=user_id,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=dict(details) if details is not None else None,
    )
    session.add(event)
    return event
