"""Every file bundled with pydicom and pydicom-data: images load with sane arrays, the rest fail typed.

The expectation for each file comes from pydicom itself: when ``pydicom.dcmread(force=True).pixel_array``
works (so the codec is installed and the data is intact) Zebra must load it; otherwise Zebra must raise a
typed error, never crash. Deliberate differences: non-zero, non-TIFF preambles are refused, and a file
without file meta is read with the native transfer syntax pydicom detected.
Measured: about 10 s for the ~250 files on a shared 2-core machine.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from zebra.errors import UnsafeFileError, ZebraError
from zebra_intake import load_study

FILES = sorted({Path(p) for p in get_testdata_files() if Path(p).is_file()}, key=str)


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _expected(path: Path) -> str:
    head = path.read_bytes()[:132]
    if head[128:132] == b"DICM" and any(head[:128]) and head[:4] not in (b"II*\x00", b"MM\x00*"):
        return "unsafe"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in ds.file_meta:
                # Zebra (documented) assumes the native syntax pydicom detected for files without meta.
                implicit, little = ds.original_encoding
                ds.file_meta.TransferSyntaxUID = (
                    ImplicitVRLittleEndian
                    if implicit
                    else ExplicitVRLittleEndian
                    if little
                    else ExplicitVRBigEndian
                )
            ds.pixel_array  # noqa: B018
        except Exception:  # the oracle: anything pydicom cannot decode must be refused, typed
            return "error"
    return "ok"


def test_corpus_is_large():
    assert len(FILES) > 200


@pytest.mark.parametrize("path", FILES, ids=_label)
def test_every_test_file_loads_or_fails_typed(path: Path, salt: bytes):
    expected = _expected(path)
    try:
        study = load_study(path, salt=salt)
    except ZebraError as exc:
        assert expected != "ok", f"pydicom decodes {path.name} but Zebra refused it: {exc}"
        if expected == "unsafe":
            assert isinstance(exc, UnsafeFileError)
        return
    assert expected == "ok", f"Zebra loaded {path.name}, which pydicom cannot decode"
    assert study.images, "a study without images"
    for image in study.images:
        rows, cols = image.pixels.shape
        assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
        assert image.display.dtype == np.uint8 and image.display.shape == (rows, cols)
        assert np.isfinite(image.pixels).all()
        if image.rgb is not None:
            assert image.rgb.shape == (rows, cols, 3) and image.rgb.dtype == np.uint8
        if image.meta.get("rows") is not None:
            assert (image.meta["rows"], image.meta["columns"]) == (rows, cols)
    frames = [im.frame_index for im in study.images]
    assert (
        frames == sorted(frames) or len(study.series) > 1 or len({im.source_name for im in study.images}) > 1
    )
