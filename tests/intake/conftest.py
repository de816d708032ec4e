"""Fixtures for intake tests: a salt and a writer of small synthetic DICOM files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SALT = b"test-salt-0123456789abcdef-zebra"
PATIENT_NAME = "Quixote^Alonso"
PATIENT_ID = "PID-77351"
BIRTH_DATE = "19471009"


@pytest.fixture
def salt() -> bytes:
    return SALT


def build_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    frames: int | None = None,
    instance: int | None = None,
    position: tuple[float, float, float] | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    private: bool = True,
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """A CT-like data set around ``pixels`` ((rows, cols) or (frames, rows, cols), int16/uint16/uint8)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.InstitutionName = "Hospital of La Mancha"
    ds.StudyDescription = f"Head CT for {PATIENT_NAME}"
    ds.Modality = "CT"
    ds.BodyPartExamined = "HEAD"
    arr = np.asarray(pixels)
    ds.Rows, ds.Columns = int(arr.shape[-2]), int(arr.shape[-1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    if frames is not None:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if private:
        block = ds.private_block(0x0009, "ACME 1.0", create=True)
        block.add_new(0x10, "LO", f"private copy of {PATIENT_NAME}")
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    return ds


def write(ds: Dataset, path: Path) -> Path:
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.fixture
def make_dicom(tmp_path: Path) -> Callable[..., Path]:
    """``make_dicom(pixels, name=..., **build_dataset kwargs) -> Path`` of a written DICOM file."""
    counter = iter(range(10_000))

    def make(pixels: np.ndarray, name: str | None = None, folder: Path | None = None, **kwargs: Any) -> Path:
        target = (folder or tmp_path) / (name or f"img{next(counter)}.dcm")
        target.parent.mkdir(parents=True, exist_ok=True)
        return write(build_dataset(pixels, **kwargs), target)

    return make


@pytest.fixture
def dicom_tools() -> Any:
    """The builders and the identity used by synthetic files (test modules cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        build=build_dataset, write=write, name=PATIENT_NAME, patient_id=PATIENT_ID, birth=BIRTH_DATE
    )
