"""Every table round-trips (JSON payloads, tz-aware datetimes); constraints and cascades are enforced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from store import (
    AuditEvent,
    AuthToken,
    ChatMessage,
    ChatSession,
    Image,
    KnowledgeChunk,
    KnowledgeDocument,
    Patient,
    Series,
    Store,
    Study,
    TriageItem,
    TriageRun,
    User,
)

# A non-UTC offset: values must come back as the same instant, expressed in UTC.
CET = timezone(timedelta(hours=1))
T0 = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=CET)
DEID = {"removed": ["PatientName", "PatientBirthDate"], "replaced": {"StudyInstanceUID": "pseudo-uid"}}


def _populate(s: Session) -> dict[str, int | str]:
    """One row in every table, linked the way the product links them. Returns the ids."""
    user = User(username="ada", password_hash="scrypt$abc", is_admin=True, created_at=T0)
    patient = Patient(pseudo_id="ZP-0001", sex="F", age_years=45)
    study = Study(
        patient=patient,
        study_uid="2.25.111",
        modality="MR",
        body_part="BRAIN",
        description="MRI brain w/o contrast",
        source_kind="dicom",
        owner=user,
        deid_record=DEID,
    )
    series = Series(study=study, series_uid="2.25.222", modality="MR", description="T2 FLAIR", number=3)
    Image(
        series=series,
        sop_uid="2.25.333",
        frame_index=0,
        slice_index=12,
        rows=512,
        columns=448,
        storage_path="studies/2.25.111/0012.png",
        sha256="a" * 64,
        meta={"window": [40.0, 400.0], "spacing_mm": [0.5, 0.5]},
    )
    doc = KnowledgeDocument(
        bundle="default",
        source="medpix",
        doc_key="MPX1234",
        kind="case_report",
        title="Lhermitte–Duclos disease",
        diagnosis="Dysplastic cerebellar gangliocytoma",
        meta={"icd10": "D33.1", "tags": ["cerebellum", "rare"]},
        sha256="b" * 64,
    )
    KnowledgeChunk(
        document=doc,
        chunk_index=0,
        vector_id=2**40 + 7,
        text="Striated cerebellar folia…",
        char_start=0,
        char_end=26,
        n_tokens=9,
    )
    run = TriageRun(
        name="nightly",
        worklist="/data/worklist.csv",
        bundle="default",
        config={"top_k": 5, "threshold": 0.25},
        status="running",
    )
    item = TriageItem(
        run=run,
        item_key="acc-1",
        accession="ACC1",
        study_path="in/acc-1",
        prior_path=None,
        history="headache",
        status="leased",
        lease_owner="worker-1",
        lease_expires_at=T0 + timedelta(minutes=5),
        attempts=1,
        priority=0.87,
        result={"differential": [{"dx": "LDD", "p": 0.6}]},
    )
    chat = ChatSession(user=user, title="case 1", study=study, created_at=T0)
    ChatMessage(session=chat, role="user", content="What is this?", created_at=T0)
    ChatMessage(
        session=chat,
        role="assistant",
        content="Consider LDD.",
        payload={"citations": [{"doc": "MPX1234", "chunk": 0}], "abstained": False},
    )
    AuthToken(user=user, token_hash="c" * 64, expires_at=T0 + timedelta(hours=12))
    s.add_all([user, patient, doc, run, chat])
    s.flush()
    s.add(
        AuditEvent(
            user_id=user.id, action="study.upload", target_type="study", target_id=str(study.id), details=None
        )
    )
    s.flush()
    return {
        "user": user.id,
        "patient": patient.id,
        "study": study.id,
        "series": series.id,
        "doc": doc.id,
        "run": run.id,
        "item": item.id,
        "chat": chat.id,
    }


def test_round_trip_every_table(store: Store) -> None:
    with store.session() as s:
        ids = _populate(s)

    with store.session() as s:
        user = s.get(User, ids["user"])
        assert user is not None and user.username == "ada" and user.is_admin and user.is_active
        assert user.created_at == T0 and user.created_at.tzinfo is not None
        assert user.created_at.utcoffset() == timedelta(0)
        assert user.created_at.hour == 8  # 09:30 CET is 08:30 UTC

        study = s.scalars(select(Study).where(Study.study_uid == "2.25.111")).one()
        assert study.deid_record == DEID
        assert study.patient.pseudo_id == "ZP-0001" and study.patient.age_years == 45
        assert study.owner is not None and study.owner.username == "ada"
        assert abs(study.created_at - datetime.now(UTC)) < timedelta(minutes=5)
        (series,) = study.series
        (image,) = series.images
        assert (image.rows, image.columns, image.slice_index) == (512, 448, 12)
        assert image.meta == {"window": [40.0, 400.0], "spacing_mm": [0.5, 0.5]}

        doc = s.get(KnowledgeDocument, ids["doc"])
        assert doc is not None and doc.title == "Lhermitte–Duclos disease"
        assert doc.meta == {"icd10": "D33.1", "tags": ["cerebellum", "rare"]}
        assert doc.chunks[0].vector_id == 2**40 + 7  # int64 survives
        assert doc.chunks[0].text.endswith("…")

        item = s.get(TriageItem, ids["item"])
        assert item is not None and item.run.config == {"top_k": 5, "threshold": 0.25}
        assert item.lease_expires_at == T0 + timedelta(minutes=5)
        assert item.lease_expires_at.tzinfo is not None
        assert item.priority == pytest.approx(0.87)
        assert item.result == {"differential": [{"dx": "LDD", "p": 0.6}]}
        assert item.updated_at.tzinfo is not None

        chat = s.get(ChatSession, ids["chat"])
        assert chat is not None and len(chat.id) == 36 and chat.study_id == ids["study"]
        assert [m.role for m in chat.messages] == ["user", "assistant"]
        assert chat.messages[0].payload is None  # Python None is SQL NULL, not JSON null
        assert chat.messages[1].payload == {"citations": [{"doc": "MPX1234", "chunk": 0}], "abstained": False}

        token = s.scalars(select(AuthToken)).one()
        assert token.user_id == ids["user"] and token.expires_at == T0 + timedelta(hours=12)
        event = s.scalars(select(AuditEvent)).one()
        assert event.action == "study.upload" and event.target_id == str(ids["study"])
        assert event.details is None and event.ts.tzinfo is not None


def test_datetime_filters_compare_instants(store: Store) -> None:
    with store.session() as s:
        _populate(s)
    with store.session() as s:
        # Same instant as the lease expiry, written in another zone.
        expiry = (T0 + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-5)))
        assert s.scalar(select(func.count()).where(TriageItem.lease_expires_at < expiry)) == 0
        assert s.scalar(select(func.count()).where(TriageItem.lease_expires_at <= expiry)) == 1


def test_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"), store.session() as s:
        s.add(User(username="bob", password_hash="x", created_at=datetime(2024, 1, 1)))
        s.flush()


def test_updated_at_moves_on_update(store: Store) -> None:
    with store.session() as s:
        ids = _populate(s)
    with store.session() as s:
        item = s.get(TriageItem, ids["item"])
        assert item is not None
        before = item.updated_at
        item.status = "done"
    with store.session() as s:
        item = s.get(TriageItem, ids["item"])
        assert item is not None and item.status == "done" and item.updated_at >= before


UNIQUE_CASES: dict[str, Callable[[dict[str, int | str]], object]] = {
    "patient pseudo_id": lambda ids: Patient(pseudo_id="ZP-0001"),
    "study uid": lambda ids: Study(patient_id=ids["patient"], study_uid="2.25.111", source_kind="png"),
    "series uid in study": lambda ids: Series(study_id=ids["study"], series_uid="2.25.222"),
    "image frame": lambda ids: Image(
        series_id=ids["series"], sop_uid="2.25.333", frame_index=0, storage_path="x.png"
    ),
    "document key": lambda ids: KnowledgeDocument(
        bundle="default", source="medpix", doc_key="MPX1234", kind="caption"
    ),
    "chunk index": lambda ids: KnowledgeChunk(document_id=ids["doc"], chunk_index=0, text="dup"),
    "item key in run": lambda ids: TriageItem(run_id=ids["run"], item_key="acc-1"),
    "username": lambda ids: User(username="ada", password_hash="y"),
    "token hash": lambda ids: AuthToken(
        user_id=ids["user"], token_hash="c" * 64, expires_at=datetime.now(UTC)
    ),
}


@pytest.mark.parametrize("case", sorted(UNIQUE_CASES))
def test_unique_constraints(store: Store, case: str) -> None:
    with store.session() as s:
        ids = _populate(s)
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(UNIQUE_CASES[case](ids))
        s.flush()


def test_scoped_keys_may_repeat_in_another_scope(store: Store) -> None:
    with store.session() as s:
        _populate(s)
    # The same document key in another bundle and the same item key in another run are fine.
    with store.session() as s:
        s.add(KnowledgeDocument(bundle="other", source="medpix", doc_key="MPX1234", kind="case_report"))
        s.add(TriageItem(run=TriageRun(name="second"), item_key="acc-1"))
    with store.session() as s:
        assert _count(s, KnowledgeDocument) == 2 and _count(s, TriageItem) == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: Study(patient_id=999_999, study_uid="orphan", source_kind="png"),
        lambda: KnowledgeChunk(document_id=999_999, chunk_index=0, text="orphan"),
        lambda: ChatMessage(session_id="no-such-session", role="user", content="hi"),
    ],
    ids=["study", "chunk", "message"],
)
def test_foreign_keys_are_enforced(store: Store, make: Callable[[], object]) -> None:
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(make())
        s.flush()


def test_check_constraints(store: Store) -> None:
    with store.session() as s:
        ids = _populate(s)
    bad = [
        TriageRun(name="x", status="exploded"),
        TriageItem(run_id=ids["run"], item_key="k2", status="lost"),
        TriageItem(run_id=ids["run"], item_key="k3", attempts=-1),
        ChatMessage(session_id=ids["chat"], role="robot", content="beep"),
        Patient(pseudo_id="ZP-neg", age_years=-3),
    ]
    for row in bad:
        with pytest.raises(IntegrityError), store.session() as s:
            s.add(row)
            s.flush()


def _count(s: Session, model: type) -> int:
    return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_cascades_at_database_level(store: Store) -> None:
    """Core DELETEs (no ORM cascade involved) prove the ON DELETE rules live in the schema."""
    with store.session() as s:
        ids = _populate(s)

    with store.session() as s:
        s.execute(delete(Patient).where(Patient.id == ids["patient"]))
    with store.session() as s:
        assert (_count(s, Study), _count(s, Series), _count(s, Image)) == (0, 0, 0)
        chat = s.get(ChatSession, ids["chat"])
        assert chat is not None and chat.study_id is None  # the chat outlives the study

        s.execute(delete(KnowledgeDocument).where(KnowledgeDocument.id == ids["doc"]))
        s.execute(delete(TriageRun).where(TriageRun.id == ids["run"]))
    with store.session() as s:
        assert (_count(s, KnowledgeChunk), _count(s, TriageItem)) == (0, 0)

        s.execute(delete(User).where(User.id == ids["user"]))
    with store.session() as s:
        assert (_count(s, AuthToken), _count(s, ChatSession), _count(s, ChatMessage)) == (0, 0, 0)
        event = s.scalars(select(AuditEvent)).one()
        assert event.user_id is None and event.action == "study.upload"  # the audit trail survives


def test_orm_delete_relies_on_database_cascade(store: Store) -> None:
    with store.session() as s:
        ids = _populate(s)
    with store.session() as s:
        user = s.get(User, ids["user"])
        s.delete(user)
    with store.session() as s:
        assert _count(s, User) == 0 and _count(s, AuthToken) == 0 and _count(s, ChatMessage) == 0
        study = s.get(Study, ids["study"])
        assert study is not None and study.owner_user_id is None
