"""Studies of a user: storing an upload, describing a study, rendering its images with a window."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

import store
from store.repo import record_audit
from zebra_intake.display import window_to_uint8
from zebra_intake.types import Study as IntakeStudy
from zebra_web.errors import BadRequestError, ResourceNotFoundError
from zebra_web.persist import save_study
from zebra_web.pixel_cache import PIXELS

log = logging.getLogger(__name__)

ROLES = ("current", "prior")


def owner_scoped_uid(study_uid: str, user_id: int) -> str:
    """A study UID unique per uploader (``2.25.<int>``).

    Intake derives UIDs deterministically, so two users uploading the same file would otherwise share one
    row, owned by whoever came first; scoping by user keeps every user's copy private.
    """
    digest = hashlib.sha256(f"{study_uid}|owner:{int(user_id)}".encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def owned_study(session: Session, study_id: int, user_id: int) -> store.Study:
    """The study if ``user_id`` owns it.

    Raises:
        ResourceNotFoundError: When it does not exist or is someone else's (indistinguishable on purpose).
    """
    row = session.get(store.Study, study_id)
    if row is None or row.owner_user_id != user_id:
        raise ResourceNotFoundError(f"No study {study_id}.", hint="List your studies with GET /api/studies.")
    return row


def owned_chat(session: Session, session_id: str, user_id: int) -> store.ChatSession:
    """The chat session if ``user_id`` owns it.

    Raises:
        ResourceNotFoundError: When it does not exist or is someone else's.
    """
    row = session.get(store.ChatSession, session_id) if session_id and len(session_id) <= 64 else None
    if row is None or row.user_id != user_id:
        raise ResourceNotFoundError(
            "No such chat session.", hint="List your sessions with GET /api/sessions."
        )
    return row


def study_images(session: Session, study_id: int) -> list[store.Image]:
    """The images of a study in display order (series, then slice, then frame); ``n`` is the list index."""
    series = session.scalars(
        select(store.Series)
        .where(store.Series.study_id == study_id)
        .order_by(store.Series.number, store.Series.id)
        .options(selectinload(store.Series.images))
    ).all()
    return [image for s in series for image in s.images]


def describe_study(session: Session, row: store.Study) -> dict[str, Any]:
    """JSON description of a study: no pixel values, no identifiers (it was de-identified at intake)."""
    images = study_images(session, row.id)
    series_ids = {}
    out_images = []
    for n, image in enumerate(images):
        series_index = series_ids.setdefault(image.series_id, len(series_ids))
        meta = image.meta or {}
        out_images.append(
            {
                "n": n,
                "series": series_index,
                "slice_index": image.slice_index,
                "frame_index": image.frame_index,
                "rows": image.rows,
                "columns": image.columns,
                "window": meta.get("window"),
                "pixel_range": meta.get("pixel_range"),
                "pixel_spacing": meta.get("pixel_spacing"),
                "url": f"/api/studies/{row.id}/images/{n}.png",
            }
        )
    deid = row.deid_record or None
    return {
        "id": row.id,
        "modality": row.modality,
        "body_part": row.body_part,
        "source_kind": row.source_kind,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "n_images": len(out_images),
        "n_series": len(series_ids),
        "images": out_images,
        "deid": None
        if deid is None
        else {
            "profile": deid.get("profile"),
            "removed": deid.get("removed", []),
            "emptied": deid.get("emptied", []),
            "replaced": deid.get("replaced", []),
            "private_tags_removed": deid.get("private_tags_removed", 0),
            "burned_in_annotation": deid.get("burned_in_annotation", False),
        },
    }


def list_studies(session: Session, user_id: int) -> list[dict[str, Any]]:
    """The user's studies, newest first (summary fields only)."""
    rows = session.scalars(
        select(store.Study).where(store.Study.owner_user_id == user_id).order_by(store.Study.id.desc())
    ).all()
    return [
        {
            "id": r.id,
            "modality": r.modality,
            "source_kind": r.source_kind,
            "created_at": r.created_at.isoformat() if r.created_at else None,
        }
        for r in rows
    ]


def store_upload(
    db: store.Store,
    study: IntakeStudy,
    data_dir: Path,
    *,
    user_id: int,
    role: str,
    session_id: str | None,
    n_files: int,
    n_bytes: int,
    origin: str = "upload",
) -> dict[str, Any]:
    """Saves a parsed upload for ``user_id``, attaches it to a chat session, and records an audit event
    (``origin``: ``upload``, or ``pacs`` for a study opened from the PACS).

    Raises:
        ResourceNotFoundError: When ``session_id`` is not one of the user's sessions.
    """
    if role not in ROLES:
        raise BadRequestError(f"Unknown role {role!r}.", hint="Use role=current or role=prior.")
    study.study_uid = owner_scoped_uid(study.study_uid, user_id)
    for attempt in range(2):
        try:
            with db.session(immediate=True) as s:
                chat = owned_chat(s, session_id, user_id) if session_id else None
                row = save_study(s, study, data_dir, owner_user_id=user_id)
                if chat is not None:
                    if role == "prior":
                        chat.prior_study_id = row.id
                    else:
                        chat.study_id = row.id
                record_audit(
                    s,
                    "study.upload",
                    user_id=user_id,
                    target_type="study",
                    target_id=row.id,
                    details={
                        "role": role,
                        "origin": origin,
                        "files": n_files,
                        "bytes": n_bytes,
                        "source_kind": study.source_kind,
                        "images": len(study.images),
                        "session_id": session_id,
                    },
                )
                s.flush()
                out = describe_study(s, row)
            _make_study_private(data_dir, study.study_uid)
            out["warnings"] = list(study.warnings)
            out["role"] = role
            out["session_id"] = session_id
            return out
        except IntegrityError:
            # The same user uploaded the same study twice at once: the second sees the first's row.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _make_study_private(data_dir: Path, study_uid: str) -> None:
    """Folders 0700 and files 0600 for a stored study, whatever the process umask was."""
    from zebra_web.deletion import make_private, study_folder

    try:
        make_private(study_folder(data_dir, study_uid))
    except (OSError, ValueError) as exc:
        log.warning("could not restrict the permissions of a stored study (%s)", type(exc).__name__)


def render_png(data_dir: Path, image: store.Image, wc: float | None, ww: float | None) -> bytes | Path:
    """The display PNG of an image: the stored file, or re-rendered from modality units with a window.

    Raises:
        BadRequestError: For a window that is not finite, or a width that is not positive.
    """
    stored = Path(data_dir) / image.storage_path
    if wc is None and ww is None:
        return stored
    meta = image.meta or {}
    default = meta.get("window") or meta.get("pixel_range")
    if wc is None or ww is None:
        if not default:
            raise BadRequestError("Give both wc and ww.", hint="E.g. ?wc=40&ww=400.")
        if default is meta.get("pixel_range"):
            lo, hi = default
            default = [(lo + hi) / 2, max(hi - lo, 1.0)]
        wc = default[0] if wc is None else wc
        ww = default[1] if ww is None else ww
    if not (np.isfinite(wc) and np.isfinite(ww)) or ww <= 0 or abs(wc) > 1e7 or ww > 1e7:
        raise BadRequestError(
            "Invalid window.", hint="wc must be finite and ww a positive number (e.g. 40/400)."
        )
    npy = stored.with_suffix(".npy")
    if not npy.is_file():
        raise ResourceNotFoundError(
            "The pixel data of this image is missing.", hint="Upload the study again."
        )
    pixels = PIXELS.get(npy)
    display = window_to_uint8(pixels, float(wc), float(ww))
    buf = io.BytesIO()
    PILImage.fromarray(display).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def load_display(data_dir: Path, image: store.Image) -> np.ndarray:
    """The stored display image (uint8) of an image row."""
    with PILImage.open(Path(data_dir) / image.storage_path) as img:
        return np.asarray(img.convert("L") if img.mode not in ("L", "RGB") else img).copy()
