"""Small real DICOM studies for tests and ``zebra bench triage --source dicomweb``.

Each study is a short series made from pydicom's real MR and CT test images (``MR_small.dcm``,
``CT_small.dcm``): real pixels and real headers, with fresh UIDs, consecutive slice positions and a given
accession number, so every test or benchmark run searches only its own studies.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset

#: pydicom test files used as templates, by modality.
TEMPLATES: dict[str, str] = {"MR": "MR_small.dcm", "CT": "CT_small.dcm"}


def _template(modality: str) -> Dataset:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file(TEMPLATES[modality])
    if path is None:
        raise FileNotFoundError(f"pydicom test file {TEMPLATES[modality]} is missing")
    return dcmread(path)


def sample_study(
    accession: str,
    *,
    modality: str = "MR",
    slices: int = 3,
    patient_id: str = "ZEBRA-TEST",
    study_date: str = "20260115",
) -> list[Dataset]:
    """One study of ``slices`` instances of one series (see the module docstring)."""
    from pydicom.uid import generate_uid

    base = _template(modality)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    out: list[Dataset] = []
    thickness = float(base.get("SliceThickness", 0) or 0) or 5.0
    origin = [float(v) for v in base.get("ImagePositionPatient", [0.0, 0.0, 0.0])]
    for i in range(slices):
        ds = copy.deepcopy(base)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.AccessionNumber = accession
        ds.PatientID = patient_id
        ds.PatientName = "Test^Zebra"
        ds.StudyDate = study_date
        ds.SeriesDate = study_date
        ds.StudyTime = "101500"
        ds.StudyID = accession[-16:]
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + i * thickness]
        if "SliceLocation" in ds:
            ds.SliceLocation = origin[2] + i * thickness
        out.append(ds)
    return out


def sample_studies(
    prefix: str, n: int, *, slices: int = 3, patients: int | None = None
) -> list[list[Dataset]]:
    """``n`` studies, MR and CT alternating, accession ``<prefix><i:03d>``; ``patients`` patients in turn
    (default: one per study), each patient's studies on consecutive days."""
    patients = patients or n
    out = []
    for i in range(n):
        out.append(
            sample_study(
                f"{prefix}{i:03d}",
                modality="MR" if i % 2 == 0 else "CT",
                slices=slices,
                patient_id=f"{prefix}P{i % patients:03d}",
                study_date=f"202601{10 + i // patients:02d}",
            )
        )
    return out


def write_tree(studies: Sequence[Sequence[Dataset]], root: Path) -> Path:
    """Writes the studies as a DICOM folder tree (one folder per study) and returns ``root``."""
    for s, study in enumerate(studies):
        folder = root / f"study{s:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, ds in enumerate(study):
            ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
    return root


def wrap_picture(
    path: Path, accession: str, *, patient_id: str = "ZEBRA-TEST", modality: str = "MR"
) -> list[Dataset]:
    """A real picture (PNG/JPEG, e.g. a slice of ``../shared/data/brain-tumor-mri``) wrapped as a one-image
    DICOM study: a greyscale Secondary Capture with fresh UIDs and the given accession number."""
    import highdicom as hd
    import numpy as np
    from PIL import Image
    from pydicom.uid import generate_uid

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.uint8)
    sc = hd.sc.SCImage(
        pixel_array=np.ascontiguousarray(pixels),
        photometric_interpretation="MONOCHROME2",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        series_number=1,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="Zebra test data",
        patient_id=patient_id,
        patient_name="Test^Picture",
        accession_number=accession,
        study_id=accession[-16:],
        study_date="20260120",
        study_time="090000",
        patient_orientation=("L", "P"),
    )
    sc.Modality = modality  # highdicom writes OT; the picture is an MR slice
    sc.Laterality = ""
    return [sc]
