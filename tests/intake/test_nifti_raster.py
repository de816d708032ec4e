"""NIfTI volumes (reorientation, slice choice) and PNG/JPEG pictures."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from zebra.config import IntakeSettings
from zebra.errors import CorruptFileError, LimitExceededError, UnsupportedFormatError
from zebra_intake import load_study

# Voxel axes: i -> -y (posterior), j -> +z (superior), k -> -x (patient's left). Nothing like RAS.
PERMUTED = np.array(
    [
        [0.0, 0.0, -1.0, 30.0],
        [-1.0, 0.0, 0.0, 40.0],
        [0.0, 1.0, 0.0, -5.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _volume() -> tuple[np.ndarray, tuple[int, int, int]]:
    vol = np.zeros((9, 7, 11), dtype=np.int16)  # (i, j, k)
    vol[1:8, 2:6, 1:10] = 10  # the "body": occupies j (superior axis) 2..5
    marker = (2, 4, 3)
    vol[marker] = 1000
    return vol, marker


def _save(tmp_path: Path, vol: np.ndarray, affine: np.ndarray, name: str) -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    return path


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_nifti_is_reoriented_to_ras_and_shown_radiologically(tmp_path, salt, name):
    vol, marker = _volume()
    study = load_study(_save(tmp_path, vol, PERMUTED, name), salt=salt)
    assert study.source_kind == "nifti" and study.deid is None and study.patient_pseudo_id is None

    # Expected position from world coordinates alone: the marker's axial slice is its z; in that slice
    # columns run from the patient's right (largest x) to the left, rows from anterior (largest y).
    ijk = np.indices(vol.shape).reshape(3, -1).T
    world = (PERMUTED @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
    mx, my, mz = PERMUTED[:3, :3] @ np.array(marker) + PERMUTED[:3, 3]
    xs = np.unique(world[:, 0])[::-1]
    ys = np.unique(world[:, 1])[::-1]
    expected_col = int(np.flatnonzero(xs == mx)[0])
    expected_row = int(np.flatnonzero(ys == my)[0])

    by_z = {im.meta["slice_position"]: im for im in study.images}
    image = by_z[mz]
    assert image.pixels.shape == (len(ys), len(xs))
    assert image.pixels[expected_row, expected_col] == 1000
    assert np.count_nonzero(image.pixels == 1000) == 1
    assert image.display[expected_row, expected_col] == 255


def test_nifti_slices_cover_only_the_non_empty_extent(tmp_path, salt):
    vol, _ = _volume()
    path = _save(tmp_path, vol, PERMUTED, "vol.nii.gz")
    all_slices = load_study(path, salt=salt).images
    # The body spans j = 2..5, which is the superior axis: 4 non-empty axial slices of 7.
    assert sorted(im.meta["slice_position"] for im in all_slices) == [-3.0, -2.0, -1.0, 0.0]
    two = load_study(path, settings=IntakeSettings(nifti_slices=2), salt=salt).images
    assert [im.meta["slice_position"] for im in two] == [-3.0, 0.0]  # the two ends of the extent
    assert [im.slice_index for im in two] == [0, 1]


def test_nifti_4d_takes_the_first_volume_with_a_warning(tmp_path, salt):
    vol = np.zeros((6, 5, 4, 3), dtype=np.float32)
    vol[..., 0] = 1.0
    vol[2, 2, 2, 0] = 7.0
    vol[..., 1:] = 99.0
    study = load_study(_save(tmp_path, vol, np.eye(4), "fmri.nii.gz"), salt=salt)
    assert any("4-D" in w for w in study.warnings)
    assert max(float(im.pixels.max()) for im in study.images) == 7.0


def test_nifti_2d(tmp_path, salt):
    plane = np.arange(20, dtype=np.float32).reshape(5, 4)
    study = load_study(_save(tmp_path, plane, np.eye(4), "plane.nii"), salt=salt)
    assert len(study.images) == 1 and study.images[0].pixels.shape == (4, 5)


def test_nifti_header_claiming_a_huge_volume_is_refused(tmp_path, salt):
    path = _save(tmp_path, np.zeros((4, 4, 4), dtype=np.int16), np.eye(4), "huge.nii")
    raw = bytearray(path.read_bytes())
    raw[42:48] = struct.pack("<hhh", 8000, 8000, 8000)  # dim[1..3]
    path.write_bytes(bytes(raw))
    with pytest.raises(LimitExceededError):
        load_study(path, salt=salt)


def test_truncated_nifti_gz_is_corrupt(tmp_path, salt):
    path = _save(tmp_path, np.ones((16, 16, 16), dtype=np.float32), np.eye(4), "vol.nii.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError):
        load_study(path, salt=salt)


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(out, format="PNG")
    return out.getvalue()


def test_png_grayscale(tmp_path, salt):
    arr = (np.arange(12 * 9) % 256).astype(np.uint8).reshape(12, 9)
    path = tmp_path / "gray.png"
    path.write_bytes(_png(arr))
    study = load_study(path, salt=salt)
    image = study.images[0]
    assert study.source_kind == "raster"
    np.testing.assert_array_equal(image.pixels, arr.astype(np.float32))
    np.testing.assert_array_equal(image.display, arr)
    assert image.rgb is None and image.window is None


def test_png_16_bit_gets_a_percentile_window(tmp_path, salt):
    arr = (np.arange(40 * 30) * 50).astype(np.uint16).reshape(40, 30)
    path = tmp_path / "deep.png"
    path.write_bytes(_png(arr))
    image = load_study(path, salt=salt).images[0]
    np.testing.assert_array_equal(image.pixels, arr.astype(np.float32))
    assert image.window is not None and image.display.max() == 255 and image.display.min() == 0


def test_png_rgb_keeps_colour_and_a_gray_display(tmp_path, salt):
    rgb = np.zeros((8, 10, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[:, 5:, 2] = 255
    path = tmp_path / "colour.png"
    path.write_bytes(_png(rgb))
    image = load_study(path, salt=salt).images[0]
    assert image.rgb is not None and image.rgb.dtype == np.uint8
    np.testing.assert_array_equal(image.rgb, rgb)
    expected = np.rint(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])
    assert np.abs(image.display.astype(int) - expected).max() <= 1
    assert image.pixels.shape == (8, 10) and image.display.shape == (8, 10)


def test_jpeg_rgb_and_grayscale(tmp_path, salt):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 1] = 180
    colour = tmp_path / "c.jpg"
    Image.fromarray(rgb).save(colour, format="JPEG", quality=95)
    image = load_study(colour, salt=salt).images[0]
    assert image.rgb is not None and np.abs(image.rgb.astype(int) - rgb).max() <= 6
    gray = tmp_path / "g.jpeg"
    Image.fromarray(np.full((16, 16), 77, dtype=np.uint8)).save(gray, format="JPEG", quality=95)
    image = load_study(gray, salt=salt).images[0]
    assert image.rgb is None and abs(float(image.pixels.mean()) - 77) < 2


def test_truncated_png_is_corrupt(tmp_path, salt):
    data = _png((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptFileError):
        load_study(path, salt=salt)


def test_png_claiming_huge_size_is_refused(tmp_path, salt):
    data = bytearray(_png(np.zeros((4, 4), dtype=np.uint8)))
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    with pytest.raises(LimitExceededError):
        load_study(path, salt=salt)


def test_sniffing_uses_content_not_the_name(tmp_path, salt):
    misnamed = tmp_path / "really_a_png.dcm"
    misnamed.write_bytes(_png(np.zeros((3, 3), dtype=np.uint8)))
    assert load_study(misnamed, salt=salt).source_kind == "raster"
    gz = tmp_path / "not_nifti.nii.gz"
    gz.write_bytes(gzip.compress(b"hello world" * 50))
    with pytest.raises(UnsupportedFormatError):
        load_study(gz, salt=salt)
