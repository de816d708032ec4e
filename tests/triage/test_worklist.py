"""Worklist readers: CSV header variants, DICOM trees grouped by study, NOVA cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.errors import WorklistError
from triage.worklist import read_worklist


def test_csv_reads_header_variants_and_resolves_relative_paths(csv_worklist: Path) -> None:
    items = read_worklist(csv_worklist)
    assert len(items) == 12
    first = items[0]
    assert first.accession == "ACC0000"
    assert Path(first.study_path) == csv_worklist.parent / "studies" / "s000.png"
    assert Path(first.prior_path or "") == csv_worklist.parent / "priors" / "s000.png"
    assert items[1].prior_path is None
    assert first.history == "history of case 0"
    # Keys are stable, unique and do not contain the accession itself.
    again = read_worklist(csv_worklist)
    assert [i.item_key for i in items] == [i.item_key for i in again]
    assert len({i.item_key for i in items}) == 12
    assert all("ACC" not in i.item_key for i in items)


def test_csv_tsv_and_minimal_columns(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    tsv = tmp_path / "list.tsv"
    tsv.write_text("PATH\tINDICATION\n/abs/a.png\tcough\n\n", encoding="utf-8")
    (item,) = read_worklist(tsv)
    assert item.study_path == "/abs/a.png"
    assert item.accession is None and item.history == "cough"
    assert item.item_key.startswith("csv-")


def test_csv_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("accession,comment\nA1,x\n", encoding="utf-8")
    with pytest.raises(WorklistError, match="no study column"):
        read_worklist(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("accession,study\nA1,a.png\nA1,b.png\n", encoding="utf-8")
    with pytest.raises(WorklistError, match="entries 1 and 2"):
        read_worklist(dup)
    empty_row = tmp_path / "hole.csv"
    empty_row.write_text("accession,study\nA1,\n", encoding="utf-8")
    with pytest.raises(WorklistError, match="Row 2"):
        read_worklist(empty_row)
    with pytest.raises(WorklistError, match="does not exist"):
        read_worklist(tmp_path / "nope.csv")


def _write_dicom(path: Path, *, study_uid: str, patient: str, date: str, accession: str) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = study_uid + ".1"
    ds.PatientID = patient
    ds.PatientName = "DOE^JANE"
    ds.StudyDate = date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession
    ds.Modality = "MR"
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_tree_groups_by_study_pairs_priors_and_hides_identifiers(
    tmp_path: Path, zebra_env: Path
) -> None:
    root = tmp_path / "tree"
    # Patient P1: an old study in its own folder, a new one split over two files; P2: one study sharing
    # a folder with P1's new study.
    _write_dicom(
        root / "old" / "a.dcm", study_uid="1.2.3.1", patient="P1", date="20200101", accession="A-OLD"
    )
    _write_dicom(
        root / "mixed" / "b1.dcm", study_uid="1.2.3.2", patient="P1", date="20240101", accession="A-NEW"
    )
    _write_dicom(
        root / "mixed" / "b2.dcm", study_uid="1.2.3.2", patient="P1", date="20240101", accession="A-NEW"
    )
    _write_dicom(
        root / "mixed" / "c.dcm", study_uid="1.2.3.3", patient="P2", date="20230101", accession="A-P2"
    )
    (root / "notes.txt").write_text("not dicom", encoding="utf-8")
    items = read_worklist(root)
    by_acc = {i.accession: i for i in items}
    assert set(by_acc) == {"A-OLD", "A-NEW", "A-P2"}
    assert by_acc["A-OLD"].study_path == str(root / "old")  # a folder holding one study only
    files = json.loads(by_acc["A-NEW"].study_path)  # shares its folder: listed file by file
    assert sorted(Path(f).name for f in files) == ["b1.dcm", "b2.dcm"]
    assert by_acc["A-NEW"].prior_path == by_acc["A-OLD"].study_path
    assert by_acc["A-OLD"].prior_path is None and by_acc["A-P2"].prior_path is None
    for item in items:
        assert item.item_key.startswith("dcm-")
        assert "1.2.3" not in item.item_key and "P1" not in json.dumps(item.to_dict()).replace(str(root), "")
        assert "DOE" not in json.dumps(item.to_dict())
    # A study listed file by file is read through intake as one study (and no other study's files).
    from triage import studies

    study = studies.load(by_acc["A-NEW"].study_path)
    assert len(study.images) == 2 and study.source_kind == "dicom"
    assert len(studies.load(by_acc["A-OLD"].study_path).images) == 1


def test_nova_one_item_per_case_with_prior(nova_worklist: Path) -> None:
    items = read_worklist(nova_worklist)
    assert len(items) == 8
    with_prior = [i for i in items if i.prior_path]
    assert len(with_prior) == 4
    for item in with_prior:
        assert "prior" in Path(item.prior_path or "").name and "current" in Path(item.study_path).name
        assert Path(item.prior_path or "").is_file()
    assert all(i.item_key == f"nova-{i.accession}" for i in items)
    assert all(i.history for i in items)
