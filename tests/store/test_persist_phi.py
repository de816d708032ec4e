"""No patient name, ID or birth date from any test DICOM reaches the store, the stored files or the logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from sqlalchemy import select

import store as st
from store import Store
from zebra.errors import ZebraError
from zebra_intake import load_study
from zebra_web.persist import load_stored_pixels, save_study


def _identifiers(path: str) -> set[str]:
    """Patient name (and its components), ID and birth date of a DICOM file, as they appear in its header."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return set()
    values: set[str] = set()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs"):
        value = ds.get(keyword)
        if value is None:
            continue
        text = str(value).strip()
        values.add(text)
        if keyword == "PatientName" and "^" in text:
            # the family name alone, when long enough not to be an ordinary word of a message
            family = text.split("^", 1)[0].strip()
            if len(family) >= 6:
                values.add(family)
    # Very short values ("A", "0010") would match unrelated text (tags, numbers); they identify nobody.
    return {v for v in values if len(v) >= 6 or (len(v) >= 4 and not v.isdigit())}


def _with_identifiers() -> list[tuple[str, set[str]]]:
    found = []
    for path in sorted(set(get_testdata_files("*.dcm"))):
        ids = _identifiers(path)
        if ids:
            found.append((path, ids))
    return found


CASES = _with_identifiers()


def _dump_database(session) -> str:
    chunks: list[str] = []
    for table in st.Base.metadata.sorted_tables:
        for row in session.execute(select(table)).all():
            chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


def test_there_are_test_files_with_identifiers() -> None:
    assert len(CASES) >= 20


def test_no_identifier_reaches_store_files_or_logs(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    db = Store(db_url)
    db.upgrade()
    stored = 0
    all_ids: set[str] = set()
    caplog.set_level(logging.DEBUG)
    for path, ids in CASES:
        all_ids |= ids
        try:
            study = load_study(path, salt=b"test-salt-0123456789abcdef")
        except ZebraError as exc:
            logging.getLogger("test").info("refused: %s", exc)
            continue
        with db.session() as session:
            save_study(session, study, data_dir)
        stored += 1
    assert stored >= 10
    with db.session() as session:
        dump = _dump_database(session)
        n_images = len(session.execute(select(st.Image)).all())
        n_studies = len(session.execute(select(st.Study)).all())
    # Several test files share a StudyInstanceUID: they are one study (saving is idempotent).
    assert n_studies >= 10 and n_images >= n_studies
    files = "\n".join(p.name for p in data_dir.rglob("*"))
    logs = "\n".join(record.getMessage() for record in caplog.records)
    for value in sorted(all_ids):
        assert value not in dump, f"identifier {value!r} found in the database"
        assert value not in files, f"identifier {value!r} found in a stored file name"
        assert value not in logs, f"identifier {value!r} found in the logs"
    db.dispose()


def test_stored_pixels_round_trip(tmp_path: Path) -> None:
    db = Store(f"sqlite:///{tmp_path / 'z.db'}")
    db.upgrade()
    path = get_testdata_files("CT_small.dcm")[0]
    study = load_study(path, salt=b"s" * 16)
    with db.session() as session:
        row = save_study(session, study, tmp_path)
        again = save_study(session, study, tmp_path)
        assert again.id == row.id  # idempotent
        image = row.series[0].images[0]
        pixels = load_stored_pixels(tmp_path, image.storage_path)
    assert pixels.shape == study.images[0].pixels.shape
    assert float(abs(pixels - study.images[0].pixels).max()) == 0.0
