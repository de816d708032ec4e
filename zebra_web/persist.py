"""Keeps de-identified studies: rows in the store, display images and pixel arrays under the data directory.

Only what :func:`zebra_intake.load_study` returned is kept, and that is de-identified already: the original
DICOM header never reaches this module.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from zebra.fileio import atomic_write_bytes
from zebra_intake.types import Study

log = logging.getLogger(__name__)


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def save_study(
    session: Session, study: Study, data_dir: Path, *, owner_user_id: int | None = None
):  # -> store.Study
    """Stores a de-identified study: patient (pseudonym), study, series and one image row per 2-D image.

    Display images are written as PNG and modality-unit pixels as ``.npy`` (read back with
    ``allow_pickle=False``) under ``<data_dir>/studies/<study_uid>/``; the rows hold paths relative to
    ``data_dir``. Saving the same study twice returns the existing row.

    Args:
        session: An open store session; the caller commits.
        study: The result of :func:`zebra_intake.load_study`.
        data_dir: The data directory.
        owner_user_id: The user who uploaded it, when known.

    Returns:
        The ``store.Study`` row.
    """
    import store
    from store.repo import get_or_create_patient, get_study_by_uid

    existing = get_study_by_uid(session, study.study_uid)
    if existing is not None:
        return existing
    # Non-DICOM inputs carry no patient identity: each study gets its own pseudonymous patient.
    pseudo_id = study.patient_pseudo_id or f"anon-{study.study_uid}"
    patient = get_or_create_patient(session, pseudo_id)
    row = store.Study(
        patient=patient,
        study_uid=study.study_uid,
        modality=study.modality or None,
        body_part=study.body_part or None,
        description=study.description or None,
        source_kind=study.source_kind,
        owner_user_id=owner_user_id,
        deid_record=None if study.deid is None else study.deid.to_dict(),
    )
    session.add(row)
    root = Path(data_dir)
    rel_root = Path("studies") / study.study_uid
    for s_index, series in enumerate(study.series):
        s_row = store.Series(
            study=row,
            series_uid=series.series_uid,
            modality=series.modality or None,
            description=series.description or None,
            number=s_index,
        )
        session.add(s_row)
        for i_index, image in enumerate(series.images):
            stem = rel_root / f"s{s_index:03d}" / f"i{i_index:05d}"
            png = _png_bytes(image.display)
            atomic_write_bytes(root / stem.with_suffix(".png"), png)
            atomic_write_bytes(root / stem.with_suffix(".npy"), _npy_bytes(image.pixels.astype(np.float32)))
            session.add(
                store.Image(
                    series=s_row,
                    sop_uid=str(image.meta.get("sop_instance_uid") or f"{series.series_uid}.{i_index}"),
                    frame_index=image.frame_index,
                    slice_index=image.slice_index,
                    rows=image.shape[0],
                    columns=image.shape[1],
                    storage_path=str(stem.with_suffix(".png")),
                    sha256=hashlib.sha256(png).hexdigest(),
                    meta={k: v for k, v in image.summary().items() if k != "source_name"},
                )
            )
    session.flush()
    log.info("stored study %s: %d series, %d images", row.id, len(study.series), len(study.images))
    return row


def load_stored_pixels(data_dir: Path, storage_path: str) -> np.ndarray:
    """Reads back the modality-unit pixel array of a stored image (never unpickles)."""
    return np.load(Path(data_dir) / Path(storage_path).with_suffix(".npy"), allow_pickle=False)
