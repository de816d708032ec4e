"""Deleting studies (by their owner, with a user, or past the retention period) and measuring storage.

A deleted study leaves nothing behind: its rows (study, series, images, the pseudonymous patient when no
other study refers to it, and the chat sessions about it, with their messages: answers describe the
images), its files under ``<data_dir>/studies/<study UID>/``, its overlays and heatmaps, and its pixels in
the render cache. Only an audit event remains, which names the study's id and no patient data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, or_, select

import store
from store.repo import record_audit
from zebra_web.errors import ResourceNotFoundError
from zebra_web.overlays import OverlayStore

log = logging.getLogger(__name__)

#: Where stored studies live, relative to the data directory (``zebra_web.persist.save_study``).
STUDIES_DIR = "studies"


def study_folder(data_dir: Path, study_uid: str) -> Path:
    """The folder of a stored study's files.

    Raises:
        ValueError: When the UID would lead outside ``<data_dir>/studies``.
    """
    root = (Path(data_dir) / STUDIES_DIR).resolve()
    folder = (root / study_uid).resolve()
    if folder.parent != root:
        raise ValueError("not a study UID")
    return folder


def make_private(path: Path) -> None:
    """Makes ``path`` and everything under it readable by the owner only (folders 0700, files 0600)."""
    path = Path(path)
    if not path.exists():
        return
    if path.is_file():
        os.chmod(path, 0o600)
        return
    os.chmod(path, 0o700)
    for folder, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o700)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o600)


def private_dir(path: Path) -> Path:
    """Creates ``path`` (and parents) as 0700 folders, or makes an existing one 0700; returns it."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def storage_used(db: store.Store, data_dir: Path, user_id: int) -> int:
    """Bytes on disk of the studies ``user_id`` owns."""
    with db.session() as s:
        uids = s.scalars(select(store.Study.study_uid).where(store.Study.owner_user_id == user_id)).all()
    total = 0
    for uid in uids:
        try:
            total += _folder_bytes(study_folder(data_dir, uid))
        except ValueError:
            continue
    return total


@dataclass(frozen=True)
class DeletedStudy:
    """What deleting one study removed.

    Attributes:
        study_id: Its database id.
        chat_sessions: Chat sessions about it that went with it.
        files: Files removed from disk (images, pixels, overlays).
    """

    study_id: int
    chat_sessions: int
    files: int


def delete_study(
    db: store.Store,
    data_dir: Path,
    overlays: OverlayStore,
    study_id: int,
    *,
    owner_id: int | None = None,
    actor_id: int | None = None,
    reason: str = "owner",
) -> DeletedStudy:
    """Deletes a study and everything derived from it (module docstring).

    Args:
        db: The store.
        data_dir: The data directory.
        overlays: The overlay store (its study folder goes too).
        study_id: The study.
        owner_id: When given, the study must be this user's (else it is "not found").
        actor_id: Who deleted it, for the audit trail (``None``: the system, e.g. retention).
        reason: Why (``owner``, ``admin``, ``retention``, ``user-deleted``), for the audit trail.

    Raises:
        ResourceNotFoundError: No such study, or not ``owner_id``'s.
    """
    with db.session(immediate=True) as s:
        row = s.get(store.Study, study_id)
        if row is None or (owner_id is not None and row.owner_user_id != owner_id):
            raise ResourceNotFoundError(
                f"No study {study_id}.", hint="List your studies with GET /api/studies."
            )
        uid, patient_id = row.study_uid, row.patient_id
        paths = s.scalars(
            select(store.Image.storage_path)
            .join(store.Series, store.Series.id == store.Image.series_id)
            .where(store.Series.study_id == study_id)
        ).all()
        chats = s.scalars(
            select(store.ChatSession).where(
                or_(store.ChatSession.study_id == study_id, store.ChatSession.prior_study_id == study_id)
            )
        ).all()
        for chat in chats:
            s.delete(chat)
        s.delete(row)
        s.flush()
        others = s.scalar(
            select(func.count()).select_from(store.Study).where(store.Study.patient_id == patient_id)
        )
        if not others:
            patient = s.get(store.Patient, patient_id)
            if patient is not None:
                s.delete(patient)
        record_audit(
            s,
            "study.delete",
            user_id=actor_id,
            target_type="study",
            target_id=study_id,
            details={"reason": reason, "chat_sessions": len(chats), "images": len(paths)},
        )
    db.checkpoint()
    files = _remove_files(data_dir, overlays, uid, paths)
    log.info("deleted study %s (%s): %d chat sessions, %d files", study_id, reason, len(chats), files)
    return DeletedStudy(study_id=study_id, chat_sessions=len(chats), files=files)


def _remove_files(data_dir: Path, overlays: OverlayStore, uid: str, storage_paths: list[str]) -> int:
    """Removes a deleted study's files; returns how many there were."""
    from zebra_web.pixel_cache import forget_pixels

    data_dir = Path(data_dir)
    removed = 0
    for rel in storage_paths:
        png = (data_dir / rel).resolve()
        if not png.is_relative_to(data_dir.resolve()):
            continue  # never follow a stored path out of the data directory
        for path in (png, png.with_suffix(".npy")):
            forget_pixels(path)
            if path.is_file():
                path.unlink()
                removed += 1
    folders = []
    for locate in (lambda: study_folder(data_dir, uid), lambda: overlays.study_dir(uid)):
        with contextlib.suppress(ValueError):  # not a UID: nothing of it can be on disk
            folders.append(locate())
    for folder in folders:
        if folder.is_dir():
            removed += sum(len(files) for _root, _dirs, files in os.walk(folder))
            shutil.rmtree(folder, ignore_errors=True)
    return removed


def delete_user_studies(
    db: store.Store, data_dir: Path, overlays: OverlayStore, user_id: int, *, actor_id: int | None
) -> int:
    """Deletes every study ``user_id`` owns; returns how many."""
    with db.session() as s:
        ids = s.scalars(select(store.Study.id).where(store.Study.owner_user_id == user_id)).all()
    for study_id in ids:
        delete_study(db, data_dir, overlays, study_id, actor_id=actor_id, reason="user-deleted")
    return len(ids)


def studies_older_than(db: store.Store, days: int) -> list[int]:
    """Ids of the studies stored more than ``days`` days ago."""
    cutoff = store.utcnow() - timedelta(days=days)
    with db.session() as s:
        return list(
            s.scalars(select(store.Study.id).where(store.Study.created_at < cutoff).order_by(store.Study.id))
        )


def purge_studies(db: store.Store, data_dir: Path, overlays: OverlayStore, days: int) -> list[int]:
    """Deletes the studies older than ``days`` days (the retention period); returns their ids.

    Raises:
        ValueError: For a period under one day.
    """
    if days < 1:
        raise ValueError("the retention period must be at least one day")
    ids = studies_older_than(db, days)
    for study_id in ids:
        try:
            delete_study(db, data_dir, overlays, study_id, reason="retention")
        except ResourceNotFoundError:
            continue  # deleted meanwhile
    return ids
