"""Pixel value handling on synthetic DICOM files: rescale, windows, MONOCHROME1, frames, series, DICOMDIR."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import MediaStorageDirectoryStorage, generate_uid

from zebra.errors import UnsafeFileError
from zebra_intake import load_study

STORED = np.array([[0, 100], [200, 300]], dtype=np.int16)


def test_rescale_and_window_follow_ps33(make_dicom, salt):
    path = make_dicom(STORED, slope=2, intercept=-100, window=(200, 401))
    image = load_study(path, salt=salt).images[0]
    assert image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels, [[-100, 100], [300, 500]])
    # PS3.3 C.11.2.1.2 LINEAR: ((x - (c - 0.5)) / (w - 1) + 0.5) * 255, clipped: 64.07 -> 64, 191.57 -> 192.
    np.testing.assert_array_equal(image.display, [[0, 64], [192, 255]])
    assert image.display.dtype == np.uint8
    assert image.window == (200.0, 401.0)
    assert image.meta["window_source"] == "dicom"
    assert image.meta["rescale_slope"] == 2.0 and image.meta["rescale_intercept"] == -100.0


def test_monochrome1_is_inverted(make_dicom, salt):
    path = make_dicom(STORED, slope=2, intercept=-100, window=(200, 401), photometric="MONOCHROME1")
    image = load_study(path, salt=salt).images[0]
    np.testing.assert_array_equal(image.display, [[255, 191], [63, 0]])
    np.testing.assert_array_equal(image.pixels, [[-100, 100], [300, 500]])  # values are not inverted


def test_percentile_window_when_none_given(make_dicom, salt):
    ramp = np.arange(100 * 50, dtype=np.uint16).reshape(100, 50)
    image = load_study(make_dicom(ramp), salt=salt).images[0]
    assert image.meta["window_source"] == "percentile"
    assert image.display.min() == 0 and image.display.max() == 255
    flat = image.display.reshape(-1)
    assert np.all(np.diff(flat.astype(int)) >= 0)  # monotonic ramp stays monotonic
    assert 0 < (flat == 0).mean() < 0.05  # only ~1 % clipped at each end
    lo, hi = np.percentile(ramp, [1, 99])
    assert image.window is not None
    assert image.window[1] == pytest.approx(hi - lo + 1)


def test_invalid_window_falls_back_to_percentile(make_dicom, salt):
    path = make_dicom(STORED, window=(10, 0))  # width 0 is invalid for LINEAR
    study = load_study(path, salt=salt)
    assert study.images[0].meta["window_source"] == "percentile"
    assert any("invalid window" in w for w in study.warnings)


def test_multiframe_gives_one_image_per_frame(make_dicom, salt):
    frames = np.stack([np.full((4, 5), v, dtype=np.int16) for v in (5, 50, 500)])
    study = load_study(make_dicom(frames, frames=3, window=(250, 600)), salt=salt)
    assert [im.frame_index for im in study.images] == [0, 1, 2]
    assert [float(im.pixels[0, 0]) for im in study.images] == [5.0, 50.0, 500.0]
    assert all(im.pixels.shape == (4, 5) and im.display.shape == (4, 5) for im in study.images)


def test_series_folder_is_sorted_by_instance_and_position(make_dicom, tmp_path, salt):
    folder = tmp_path / "series"
    study_uid, series_uid = generate_uid(), generate_uid()
    order = [3, 1, 4, 2]
    names = ["zz.dcm", "aa.dcm", "mm.dcm", "bb.dcm"]  # file names deliberately out of order
    for number, name in zip(order, names, strict=True):
        make_dicom(
            np.full((3, 3), number * 10, dtype=np.int16),
            name=name,
            folder=folder,
            instance=number,
            position=(0.0, 0.0, 2.5 * number),
            study_uid=study_uid,
            series_uid=series_uid,
        )
    study = load_study(folder, salt=salt)
    assert len(study.series) == 1
    images = study.series[0].images
    assert [float(im.pixels[0, 0]) for im in images] == [10.0, 20.0, 30.0, 40.0]
    assert [im.slice_index for im in images] == [0, 1, 2, 3]
    assert [im.source_name for im in images] == ["aa.dcm", "bb.dcm", "zz.dcm", "mm.dcm"]
    assert [im.meta["image_position"][2] for im in images] == [2.5, 5.0, 7.5, 10.0]


def test_series_without_instance_numbers_sorts_by_position(make_dicom, tmp_path, salt):
    folder = tmp_path / "series"
    series_uid = generate_uid()
    study_uid = generate_uid()
    zs = [7.0, -3.0, 12.0, 0.5]
    random.Random(0).shuffle(zs)
    for i, z in enumerate(zs):
        make_dicom(
            np.full((2, 2), int(z * 10), dtype=np.int16),
            name=f"f{i}.dcm",
            folder=folder,
            position=(0.0, 0.0, z),
            study_uid=study_uid,
            series_uid=series_uid,
        )
    images = load_study(folder, salt=salt).series[0].images
    assert [im.meta["image_position"][2] for im in images] == sorted(zs)


def _dicomdir(folder: Path, file_ids: list[list[str]]) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "TEST"
    records = []
    for parts in file_ids:
        record = Dataset()
        record.DirectoryRecordType = "IMAGE"
        record.ReferencedFileID = parts
        records.append(record)
    ds.DirectoryRecordSequence = Sequence(records)
    path = folder / "DICOMDIR"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_dicomdir_resolves_its_references(make_dicom, tmp_path, salt):
    root = tmp_path / "media"
    make_dicom(STORED, name="IM1", folder=root / "DIR1")
    make_dicom(STORED * 2, name="UNLISTED", folder=root / "DIR1")
    _dicomdir(root, [["DIR1", "IM1"]])
    study = load_study(root, salt=salt)
    assert [im.source_name for im in study.images] == ["IM1"]  # only referenced files are read
    assert load_study(root / "DICOMDIR", salt=salt).images[0].source_name == "IM1"


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns while the test writes the bad IDs
@pytest.mark.parametrize(
    "parts", [["..", "outside.dcm"], ["/etc", "passwd"], ["DIR1", "..", "..", "outside.dcm"]]
)
def test_dicomdir_reference_escaping_its_root_is_refused(make_dicom, tmp_path, salt, monkeypatch, parts):
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.IGNORE)
    root = tmp_path / "media"
    make_dicom(STORED, name="IM1", folder=root / "DIR1")
    make_dicom(STORED, name="outside.dcm", folder=tmp_path)
    _dicomdir(root, [["DIR1", "IM1"], parts])
    with pytest.raises(UnsafeFileError, match="outside its folder"):
        load_study(root, salt=salt)


def test_dicomdir_reference_through_symlink_out_of_root_is_refused(make_dicom, tmp_path, salt):
    root = tmp_path / "media"
    make_dicom(STORED, name="IM1", folder=root / "DIR1")
    outside = make_dicom(STORED, name="outside.dcm", folder=tmp_path)
    os.symlink(outside, root / "DIR1" / "LINK")
    _dicomdir(root, [["DIR1", "LINK"]])
    with pytest.raises(UnsafeFileError, match="outside the folder"):
        load_study(root, salt=salt)


def test_folder_symlink_leaving_the_folder_is_refused(make_dicom, tmp_path, salt):
    root = tmp_path / "series"
    make_dicom(STORED, name="a.dcm", folder=root)
    outside = make_dicom(STORED, name="outside.dcm", folder=tmp_path)
    os.symlink(outside, root / "b.dcm")
    with pytest.raises(UnsafeFileError, match="outside the folder"):
        load_study(root, salt=salt)


def test_arrays_are_detached_from_any_dataset(make_dicom, salt):
    study = load_study(make_dicom(STORED, window=(100, 300)), salt=salt)
    image = study.images[0]
    for arr in (image.pixels, image.display):
        assert arr.flags.owndata or not isinstance(arr.base, bytes | bytearray | memoryview)
    assert not any(isinstance(v, Dataset) for v in vars(study).values())
