"""The body region kept from a DICOM file's descriptions before de-identification (zebra_intake.regions)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from zebra_intake.regions import REGION_NAMES, REGION_WORDS, described_region, region_of_texts


@pytest.mark.parametrize(
    ("texts", "region"),
    [
        (["SHOULDER", "", "T1W/SE/1024"], "SHOULDER"),
        (["abdomen^liver", "marked lesion", "t1_vibe_fs_tra_bh_dyn"], "ABDOMEN"),
        (["CTA HEAD NECK", "", ""], "HEAD"),  # a head word anywhere wins
        (["MRI BRAIN + C-SPINE", "", ""], "HEAD"),
        (["", "L-SPINE sag T2", ""], "SPINE"),
        (["Whole Body Bone", "", ""], "WHOLE_BODY"),
        (["", "Lv2", "194"], ""),
        (["5/5mm Plain", "", ""], ""),
        (["KNEE", "CHEST", ""], "LOWER_LIMB"),  # first region in field order
        (["Shoulderpad study", "", ""], ""),  # whole words only
    ],
)
def test_region_of_texts(texts, region) -> None:
    assert region_of_texts(texts) == region


def test_every_region_has_words_and_a_name() -> None:
    assert set(REGION_WORDS) == set(REGION_NAMES)
    assert all(REGION_WORDS[r] for r in REGION_WORDS)


def test_only_a_closed_list_word_leaves_the_descriptions() -> None:
    ds = Dataset()
    ds.StudyDescription = "JOHN DOE 1970 SHOULDER LEFT"
    ds.SeriesDescription = "Dr Smith"
    ds.ProtocolName = "MRN 12345"
    assert described_region(ds) == "SHOULDER"
    assert described_region(Dataset()) == ""


def test_loader_keeps_the_region_and_removes_the_descriptions() -> None:
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file("MR2_UNCR.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    from zebra_intake import load_study

    study = load_study(path)
    image = study.images[0]
    assert image.meta["described_region"] == "SHOULDER"
    assert not any(
        isinstance(v, str) and "SHOULDER" in v for k, v in image.meta.items() if k != "described_region"
    )
