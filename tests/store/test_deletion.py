"""Deleting a study, a user, and the retention purge on SQLite and PostgreSQL (issue 15): the rows derived
from a study go with it, another user's rows stay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import store as m
from store import Store


def _study(db: Store, data_dir: Path, owner: int, uid: str, *, age_days: int = 0) -> tuple[int, str]:
    with db.session() as s:
        patient = m.Patient(pseudo_id=f"anon-{uid}")
        study = m.Study(
            patient=patient,
            study_uid=uid,
            source_kind="raster",
            owner_user_id=owner,
            created_at=m.utcnow() - timedelta(days=age_days),
        )
        series = m.Series(study=study, series_uid=f"{uid}.1", number=0)
        rel = f"studies/{uid}/s000/i00000.png"
        s.add(m.Image(series=series, sop_uid=f"{uid}.1.1", storage_path=rel))
        chat = m.ChatSession(user_id=owner, study=study)
        s.add(chat)
        s.flush()
        s.add(m.ChatMessage(session_id=chat.id, role="user", content="about this patient"))
        study_id, chat_id = study.id, chat.id
    image = data_dir / rel
    image.parent.mkdir(parents=True)
    image.write_bytes(b"png")
    image.with_suffix(".npy").write_bytes(b"npy")
    return study_id, chat_id


def _count(db: Store, model, *where) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def world(store: Store, tmp_path: Path):
    from zebra_web.overlays import OverlayStore
    from zebra_web.passwords import hash_password

    with store.session() as s:
        users = [m.User(username=n, password_hash=hash_password("long enough pw")) for n in ("ann", "ben")]
        s.add_all(users)
        s.flush()
        ids = [u.id for u in users]
    data_dir = tmp_path / "data"
    return store, data_dir, OverlayStore(data_dir / "web"), ids


def test_delete_study_removes_rows_and_files(world):
    from zebra_web.deletion import delete_study
    from zebra_web.errors import ResourceNotFoundError

    db, data_dir, overlays, (ann, ben) = world
    gone, chat = _study(db, data_dir, ann, "2.25.1")
    kept, _ = _study(db, data_dir, ben, "2.25.2")
    overlays.save("2.25.1", 0, {"boxes": []})
    with pytest.raises(ResourceNotFoundError):
        delete_study(db, data_dir, overlays, gone, owner_id=ben)
    result = delete_study(db, data_dir, overlays, gone, owner_id=ann, actor_id=ann)
    assert result.chat_sessions == 1 and result.files >= 3
    assert _count(db, m.Study, m.Study.id == gone) == 0
    assert _count(db, m.Series, m.Series.study_id == gone) == 0
    assert _count(db, m.Image, m.Image.sop_uid == "2.25.1.1.1") == 0
    assert _count(db, m.Patient, m.Patient.pseudo_id == "anon-2.25.1") == 0
    assert _count(db, m.ChatSession, m.ChatSession.id == chat) == 0
    assert _count(db, m.ChatMessage, m.ChatMessage.session_id == chat) == 0
    assert not (data_dir / "studies" / "2.25.1").exists() and not overlays.study_dir("2.25.1").exists()
    assert _count(db, m.Study, m.Study.id == kept) == 1 and (data_dir / "studies" / "2.25.2").is_dir()


def test_delete_user_takes_their_studies(world):
    from zebra_web.users import delete_user

    db, data_dir, overlays, (ann, _ben) = world
    _study(db, data_dir, ann, "2.25.3")
    delete_user(db, data_dir, "ann", overlays=overlays)
    assert _count(db, m.User, m.User.id == ann) == 0
    assert _count(db, m.Study, m.Study.owner_user_id.is_(None)) == 0  # no orphaned patient data
    assert not (data_dir / "studies" / "2.25.3").exists()


def test_purge_deletes_only_studies_past_retention(world):
    from zebra_web.deletion import purge_studies

    db, data_dir, overlays, (ann, _ben) = world
    old, _ = _study(db, data_dir, ann, "2.25.4", age_days=40)
    new, _ = _study(db, data_dir, ann, "2.25.5", age_days=2)
    assert purge_studies(db, data_dir, overlays, 30) == [old]
    assert _count(db, m.Study, m.Study.id == old) == 0 and _count(db, m.Study, m.Study.id == new) == 1
    with pytest.raises(ValueError):
        purge_studies(db, data_dir, overlays, 0)
