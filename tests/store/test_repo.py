"""Repository helpers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from store import AuditEvent, KnowledgeChunk, KnowledgeDocument, Patient, Store, Study, User
from store.repo import (
    chunks_by_vector_ids,
    get_document,
    get_or_create_patient,
    get_study_by_uid,
    get_user_by_username,
    record_audit,
)


def test_get_or_create_patient_is_idempotent(store: Store) -> None:
    with store.session() as s:
        first = get_or_create_patient(s, "ZP-7", sex="M", age_years=60)
        again = get_or_create_patient(s, "ZP-7", sex="F")  # attributes only used on creation
        assert first is again
    with store.session() as s:
        assert get_or_create_patient(s, "ZP-7").sex == "M"
        assert s.scalar(select(func.count()).select_from(Patient)) == 1
        with pytest.raises(ValueError):
            get_or_create_patient(s, "")


def test_get_or_create_patient_survives_a_concurrent_insert(store: Store) -> None:
    # Another writer inserts the same pseudonym between our read and our insert.
    with store.session() as other:
        other.add(Patient(pseudo_id="ZP-race", age_years=1))
    with store.session() as s:
        s.add(Patient(pseudo_id="ZP-mine"))
        original_scalar = s.scalar
        calls = {"n": 0}

        def stale_first_read(stmt, *a, **k):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            return None if calls["n"] == 1 else original_scalar(stmt, *a, **k)

        s.scalar = stale_first_read  # type: ignore[method-assign]
        winner = get_or_create_patient(s, "ZP-race")
        assert winner.age_years == 1
    with store.session() as s:
        # The savepoint rolled back only the duplicate; the other pending row was kept.
        assert sorted(s.scalars(select(Patient.pseudo_id))) == ["ZP-mine", "ZP-race"]


def test_lookups_and_vector_id_mapping(store: Store) -> None:
    with store.session() as s:
        patient = get_or_create_patient(s, "ZP-1")
        s.add(Study(patient=patient, study_uid="2.25.9", source_kind="nifti"))
        s.add(User(username="root", password_hash="h"))
        for bundle, base in (("default", 0), ("other", 0)):
            doc = KnowledgeDocument(
                bundle=bundle, source="hpo", doc_key="HP:0001250", kind="phenotype_profile"
            )
            doc.chunks = [
                KnowledgeChunk(chunk_index=i, vector_id=base + i, text=f"{bundle}-{i}") for i in range(3)
            ]
            s.add(doc)
    with store.session() as s:
        assert get_study_by_uid(s, "2.25.9") is not None and get_study_by_uid(s, "nope") is None
        assert get_user_by_username(s, "root") is not None and get_user_by_username(s, "ROOT") is None
        doc = get_document(s, "default", "hpo", "HP:0001250")
        assert doc is not None and len(doc.chunks) == 3
        found = chunks_by_vector_ids(s, "default", [2, 0, 99, 2])
        assert sorted(found) == [0, 2]
        assert found[2].text == "default-2" and found[2].document.bundle == "default"
        assert chunks_by_vector_ids(s, "default", []) == {}


def test_record_audit(store: Store) -> None:
    with store.session() as s:
        event = record_audit(s, "login", target_type="user", target_id=42, details={"ok": True})
    with store.session() as s:
        row = s.scalars(select(AuditEvent)).one()
        assert (row.id, row.action, row.target_id, row.details) == (event.id, "login", "42", {"ok": True})
