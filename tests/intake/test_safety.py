"""Hostile inputs: polyglot preambles, huge headers, zip bombs and zip-slip, deflate bombs."""

from __future__ import annotations

import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from zebra.config import IntakeSettings
from zebra.errors import LimitExceededError, UnsafeFileError, UnsupportedFormatError
from zebra_intake import load_study
from zebra_intake.guard import describe_preamble

PIXELS = np.arange(16, dtype=np.int16).reshape(4, 4)
MiB = 1 << 20


def _with_preamble(path: Path, preamble: bytes) -> Path:
    data = bytearray(path.read_bytes())
    assert data[128:132] == b"DICM"
    data[:128] = preamble.ljust(128, b"\x00")[:128]
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "preamble",
    [
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\xb8" * 8,  # Windows PE
        b"\x7fELF\x02\x01\x01\x00",  # Linux ELF
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",  # ZIP
        b"<html><body><script>alert('x')</script></body></html>",  # HTML
        b"\x00" * 40 + b"\x01",  # anything non-zero that is not TIFF
    ],
)
def test_polyglot_preamble_is_refused(make_dicom, salt, preamble):
    path = _with_preamble(make_dicom(PIXELS), preamble)
    with pytest.raises(UnsafeFileError, match="polyglot"):
        load_study(path, salt=salt)


@pytest.mark.parametrize("preamble", [b"", b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08"])
def test_zero_and_tiff_preambles_are_accepted(make_dicom, salt, preamble):
    path = _with_preamble(make_dicom(PIXELS), preamble)
    study = load_study(path, salt=salt)
    np.testing.assert_array_equal(study.images[0].pixels, PIXELS)


def test_nonstandard_preamble_accepted_by_setting_is_discarded(make_dicom, salt):
    path = _with_preamble(make_dicom(PIXELS), b"MZ\x90\x00")
    settings = IntakeSettings(allow_nonstandard_preamble=True)
    study = load_study(path, settings=settings, salt=salt)
    np.testing.assert_array_equal(study.images[0].pixels, PIXELS)
    assert any("preamble" in w and "discarded" in w for w in study.warnings)


def test_describe_preamble_names_the_payload():
    assert describe_preamble(bytes(128)) is None
    assert describe_preamble(b"II*\x00" + bytes(124)) is None
    assert "Windows" in (describe_preamble(b"MZ" + bytes(126)) or "")
    assert "ZIP" in (describe_preamble(b"PK\x03\x04" + bytes(124)) or "")


def _peak_mib(func) -> float:
    tracemalloc.start()
    try:
        func()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / MiB


@pytest.mark.parametrize(
    ("extra", "frames"),
    [
        ({"Rows": 65535, "Columns": 65535}, None),  # the largest a US field can claim: 4.3 Gpixels
        ({}, 1_000_000),  # a million frames of a small image
    ],
)
def test_huge_header_is_refused_before_allocation(make_dicom, salt, extra, frames):
    path = make_dicom(PIXELS, extra=extra, frames=frames)
    errors: list[Exception] = []

    def load() -> None:
        try:
            load_study(path, salt=salt)
        except LimitExceededError as exc:
            errors.append(exc)

    peak = _peak_mib(load)
    assert errors, "the oversized header was not refused"
    assert peak < 32, f"{peak:.1f} MiB allocated before refusing"


def test_pixel_budget_is_checked_from_the_header(make_dicom, salt):
    path = make_dicom(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(LimitExceededError, match="pixels"):
        load_study(path, settings=IntakeSettings(max_pixels=1000), salt=salt)
    with pytest.raises(LimitExceededError, match="per side"):
        load_study(path, settings=IntakeSettings(max_dimension=32), salt=salt)
    with pytest.raises(LimitExceededError, match="limit per file"):
        load_study(path, settings=IntakeSettings(max_file_bytes=1024), salt=salt)


def test_folder_file_count_limit(make_dicom, tmp_path, salt):
    for i in range(4):
        make_dicom(PIXELS, folder=tmp_path / "many", name=f"{i}.dcm")
    with pytest.raises(LimitExceededError, match="more than 3 files"):
        load_study(tmp_path / "many", settings=IntakeSettings(max_files=3), salt=salt)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_zip_of_a_series_loads(make_dicom, tmp_path, salt):
    a = make_dicom(PIXELS, instance=1).read_bytes()
    zipped = _zip(tmp_path / "study.zip", {"study/a.dcm": a, "study/readme.txt": b"hello"})
    study = load_study(zipped, salt=salt)
    assert len(study.images) == 1 and study.source_kind == "dicom"


def test_zip_bomb_is_refused(tmp_path, salt):
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.dcm": bytes(20 * MiB)})
    assert bomb.stat().st_size < 100_000
    with pytest.raises(UnsafeFileError, match="bomb"):
        load_study(bomb, salt=salt)


def test_zip_total_size_limit(tmp_path, salt):
    archive = _zip(tmp_path / "big.zip", {f"{i}.bin": bytes(range(256)) * 4096 for i in range(3)})
    with pytest.raises(LimitExceededError):
        load_study(archive, settings=IntakeSettings(max_total_bytes=2 * MiB), salt=salt)


@pytest.mark.parametrize("name", ["../evil.dcm", "study/../../evil.dcm", "/tmp/evil.dcm", "C:/evil.dcm"])
def test_zip_slip_is_refused(make_dicom, tmp_path, salt, name):
    archive = _zip(tmp_path / "slip.zip", {"ok.dcm": make_dicom(PIXELS).read_bytes(), name: b"x"})
    with pytest.raises(UnsafeFileError):
        load_study(archive, salt=salt)
    assert not (tmp_path.parent / "evil.dcm").exists()


def test_zip_with_a_symlink_member_is_refused(tmp_path, salt):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("link.dcm")
        info.external_attr = 0o120777 << 16  # S_IFLNK
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeFileError, match="link"):
        load_study(path, salt=salt)


def test_zip_member_count_limit(tmp_path, salt):
    archive = _zip(tmp_path / "many.zip", {f"{i}.dcm": b"x" for i in range(10)})
    with pytest.raises(LimitExceededError):
        load_study(archive, settings=IntakeSettings(max_files=5), salt=salt)


def test_deflated_dicom_bomb_is_refused(dicom_tools, tmp_path, salt):
    ds = dicom_tools.build(PIXELS)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = dicom_tools.write(ds, tmp_path / "dfl.dcm")
    study = load_study(path, salt=salt)  # a normal deflated file loads
    np.testing.assert_array_equal(study.images[0].pixels, PIXELS)
    # Now replace the deflated body with a 40 MiB stream of zeros (a 1000:1 ratio).
    head = pydicom.dcmread(path, stop_before_pixels=True)
    meta_end = 132 + 12 + int(head.file_meta.FileMetaInformationGroupLength)
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = squeezer.compress(bytes(40 * MiB)) + squeezer.flush()
    path.write_bytes(path.read_bytes()[:meta_end] + body)
    with pytest.raises(UnsafeFileError, match="bomb"):
        load_study(path, salt=salt)


def test_garbage_with_an_image_extension_is_unsupported(tmp_path, salt):
    fake = tmp_path / "scan.dcm"
    fake.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(UnsupportedFormatError):
        load_study(fake, salt=salt)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnsupportedFormatError):
        load_study(empty, salt=salt)
