"""De-identification: nothing identifying in the result or the logs, stable pseudonyms, no private tags."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from zebra.errors import ZebraError
from zebra.logs import RedactingFilter
from zebra_intake import load_study
from zebra_intake.deid import deidentify, load_profile, pseudo_uid
from zebra_intake.salt import load_or_create_salt, salt_path

#: Names that happen to be everyday words (or our own vocabulary) and so cannot be searched for.
_TOO_GENERIC = {"anonymized", "anonymous", "test", "modality", "removed", "name"}


def _identifiers(path: Path) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            values = [str(ds.get(k, "") or "") for k in ("PatientName", "PatientID", "PatientBirthDate")]
        except Exception:  # unreadable files are covered by the corpus test
            return []
    found = []
    for value in values:
        value = value.strip()
        candidates = [value, value.replace("^", " ").strip()]
        if "^" in value:
            family = value.split("^")[0].strip()
            if len(family) >= 4:
                candidates.append(family)
        for candidate in candidates:
            if len(candidate) >= 4 and candidate.lower() not in _TOO_GENERIC and candidate not in found:
                found.append(candidate)
    return found


def _strings(obj: Any) -> list[str]:
    """Every string reachable from a study (dataclass fields, dicts, lists, tuples)."""
    out: list[str] = []
    if isinstance(obj, str):
        out.append(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            out.extend(_strings(getattr(obj, f.name)))
    elif isinstance(obj, dict):
        for value in obj.values():  # keys are Zebra's own fixed schema
            out.extend(_strings(value))
    elif isinstance(obj, list | tuple):
        for item in obj:
            out.extend(_strings(item))
    return out


def _leaks(texts: list[str], identifiers: list[str]) -> list[tuple[str, str]]:
    hits = []
    for ident in identifiers:
        # Whole-token match: "12345678" must not match inside a 39-digit pseudonymous UID by chance.
        pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(ident)}(?![0-9A-Za-z])", re.IGNORECASE)
        hits.extend((ident, t[:80]) for t in texts if pattern.search(t))
    return hits


CASES = [
    p
    for p in sorted({Path(p) for p in get_testdata_files() if Path(p).is_file()}, key=str)
    if _identifiers(p)
]


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_identifier_in_study_or_logs(path: Path, salt: bytes, caplog):
    identifiers = _identifiers(path)
    with caplog.at_level(logging.DEBUG):
        try:
            study = load_study(path, salt=salt)
        except ZebraError as exc:
            assert not _leaks([str(exc)], identifiers)
            study = None
    assert not _leaks([caplog.text, *(r.getMessage() for r in caplog.records)], identifiers)
    if study is not None:
        assert not _leaks(_strings(study), identifiers)
        assert study.deid is not None and study.deid.datasets >= 1
        assert all(im.meta.get("patient_identity_removed") for im in study.images)


def test_synthetic_identifiers_never_surface(make_dicom, dicom_tools, salt, caplog):
    path = make_dicom(np.zeros((4, 4), dtype=np.int16), name="scan.dcm")
    with caplog.at_level(logging.DEBUG):
        study = load_study(path, salt=salt)
    texts = [*_strings(study), caplog.text]
    for ident in (dicom_tools.name, dicom_tools.patient_id, dicom_tools.birth, "Quixote", "La Mancha"):
        assert not any(ident in t for t in texts), ident
    report = study.deid
    assert report is not None
    assert {"PatientName", "PatientBirthDate", "PatientID"} <= set(report.emptied)
    assert {"InstitutionName", "StudyDescription"} <= set(report.removed)
    assert {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"} <= set(report.replaced)
    assert report.private_tags_removed == 2  # the private creator and its element
    assert study.patient_pseudo_id and study.patient_pseudo_id.startswith("P")


def test_file_name_holding_an_identifier_is_replaced(make_dicom, dicom_tools, salt):
    path = make_dicom(np.zeros((2, 2), dtype=np.int16), name=f"{dicom_tools.patient_id}.dcm")
    study = load_study(path, salt=salt)
    assert dicom_tools.patient_id not in study.images[0].source_name


def test_uids_are_deterministic_per_salt(make_dicom, salt):
    path = make_dicom(np.zeros((2, 2), dtype=np.int16))
    original = pydicom.dcmread(path).StudyInstanceUID
    first, again = load_study(path, salt=salt), load_study(path, salt=salt)
    other = load_study(path, salt=b"another-salt-of-sufficient-length")
    assert first.study_uid == again.study_uid and first.series[0].series_uid == again.series[0].series_uid
    assert first.patient_pseudo_id == again.patient_pseudo_id
    assert first.study_uid != other.study_uid and first.patient_pseudo_id != other.patient_pseudo_id
    assert first.study_uid != original and first.study_uid.startswith("2.25.")
    assert first.study_uid == pseudo_uid(original, salt)
    assert len(first.study_uid) <= 64 and re.fullmatch(r"2\.25\.[1-9][0-9]*", first.study_uid)


def _nested_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.PatientID = "ID-42"
    ds.OtherPatientIDs = "OTHER-1"
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # overlay data
    ds.add_new(0x60004000, "LT", "overlay comment naming Doe")
    ds.add_new(0x50000010, "US", 3)  # curve group
    block = ds.private_block(0x0011, "VENDOR", create=True)
    block.add_new(0x01, "LO", "private")
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"  # same UID as the study: must map the same way
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    inner = item.private_block(0x0013, "VENDOR2", create=True)
    inner.add_new(0x01, "LO", "nested private")
    item.PerformingPhysicianName = "Who^Doctor"
    ds.ReferencedSeriesSequence = Sequence([item])
    ds.RequestAttributesSequence = Sequence([Dataset()])
    ds.BurnedInAnnotation = "YES"
    return ds


def _walk(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def test_deidentify_recurses_and_removes_private_tags(salt):
    ds = _nested_dataset()
    result = deidentify(ds, salt)
    tags = [elem.tag for elem in _walk(ds)]
    assert not any(tag.is_private for tag in tags)
    assert result.report.private_tags_removed == 4
    assert "PatientName" in ds and str(ds.PatientName) == ""
    assert "OtherPatientIDs" not in ds and "RequestAttributesSequence" not in ds
    assert 0x60003000 not in ds and 0x60004000 not in ds and 0x50000010 not in ds
    item = ds.ReferencedSeriesSequence[0]
    assert "PerformingPhysicianName" not in item
    assert item.ReferencedSOPInstanceUID == ds.StudyInstanceUID == pseudo_uid("1.2.3.4.5", salt)
    assert item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # class UIDs are public: kept
    assert ds.PatientIdentityRemoved == "YES" and "DeidentificationMethod" in ds
    assert result.report.burned_in_annotation
    assert {"OverlayData", "OverlayComments", "CurveData", "OtherPatientIDs"} <= set(result.report.removed)
    assert "Doe^John" in result.identifiers  # kept in memory for residual checks only


def test_profile_table_covers_the_basic_profile():
    profile = load_profile()
    actions = {kw: act for kw, act in profile.actions.values()}
    assert len(actions) > 400
    expected = {
        "PatientName": "Z",
        "PatientID": "Z/D",
        "PatientBirthDate": "Z",
        "PatientBirthTime": "X",
        "OtherPatientIDs": "X",
        "OtherPatientNames": "X",
        "PatientAddress": "X",
        "PatientTelephoneNumbers": "X",
        "AccessionNumber": "Z",
        "InstitutionName": "X/Z/D",
        "InstitutionAddress": "X",
        "ReferringPhysicianName": "Z",
        "PerformingPhysicianName": "X",
        "OperatorsName": "X/Z/D",
        "StudyID": "Z",
        "StudyDate": "Z",
        "DeviceSerialNumber": "X/Z/D",
        "StudyInstanceUID": "U",
        "SeriesInstanceUID": "U",
        "SOPInstanceUID": "U",
        "FrameOfReferenceUID": "U",
        "RequestAttributesSequence": "X",
        "ContentSequence": "D",
    }
    for keyword, action in expected.items():
        assert actions.get(keyword) == action, keyword


def test_identifiers_are_registered_with_the_log_filter(make_dicom, dicom_tools, salt):
    load_study(make_dicom(np.zeros((2, 2), dtype=np.int16)), salt=salt)
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "patient %s seen", (dicom_tools.patient_id,), None
    )
    RedactingFilter().filter(record)
    assert dicom_tools.patient_id not in record.getMessage()


def test_salt_file_is_created_private_and_reused(zebra_env, make_dicom):
    salt = load_or_create_salt(zebra_env)
    path = salt_path(zebra_env)
    assert len(salt) == 32 and path.read_bytes() == salt
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_salt(zebra_env) == salt
    # load_study without a salt uses the data directory's salt.
    dicom = make_dicom(np.zeros((2, 2), dtype=np.int16))
    original = pydicom.dcmread(dicom).StudyInstanceUID
    assert load_study(dicom).study_uid == pseudo_uid(original, salt)
