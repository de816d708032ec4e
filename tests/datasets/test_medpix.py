"""MedPix 2.0 converter: a hand-made folder with awkward entries, and the real data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zebra.errors import ConfigError, DatasetError
from zebra_datasets.convert import convert_medpix
from zebra_datasets.nova import read_nova
from zebra_datasets.text import clean_text


def test_clean_text_strips_html_and_whitespace_noise() -> None:
    assert clean_text("Takayasu&#34;s   Arteritis") == 'Takayasu"s Arteritis'
    assert clean_text("Broca&amp;#39;s area") == "Broca's area"  # doubly escaped
    assert clean_text("< li > Well circumscribed mass (<5mm)") == "Well circumscribed mass (<5mm)"
    assert clean_text("<p>One</p><br>Two\r\n\r\n\r\n\r\nThree\t end ") == "One\n\nTwo\n\nThree end"
    assert clean_text("BP <140 and x>3") == "BP <140 and x>3"
    assert clean_text(" N/A ") is None and clean_text(None) is None and clean_text("  ") is None


def test_tiny_medpix_folder(tiny_medpix: Path, tmp_path: Path) -> None:
    report = convert_medpix(tiny_medpix, tmp_path / "out")
    assert report.rows == 4 and report.cases == 3 and report.boxes == 0
    assert report.skipped == {"no PNG under images/ (Thorax)": 1}
    assert report.examples["no PNG under images/ (Thorax)"] == ["MPX0002_missing"]
    assert report.notes["case without a Case part (no history/diagnosis text)"] == 1

    ds = read_nova(tmp_path / "out")
    assert [r.scan_id for r in ds] == ["MPX0001_img1", "MPX0001_img2", "MPX0002_img1", "MPX0003_img1"]
    first = ds[0]
    assert first.case_id == "MPX0001" and first.filename == "MPX0001_img1.png"
    assert (
        first.clinical_history == "45 y/o woman with headache.\n\nWorse at night.\nExam: Normal Exam & Labs"
    )
    assert first.final_diagnosis == "Broca's area infarct"
    assert first.caption_text == "Well circumscribed mass (<5mm) & edema"
    assert first.bboxes == []
    meta = first.meta
    assert meta["findings"] == "Enhancing mass\n\nright frontal"
    assert meta["differential_diagnosis"] == "Glioma\nMetastasis"
    assert meta["topic_title"] == "Infarct" and meta["acr_code"] == "1.3" and meta["category"] == "Vascular"
    assert meta["modality"] == "CT - noncontrast" and meta["plane"] == "Axial"
    assert meta["age"] == "45" and meta["sex"] == "female" and meta["location"] == "Brain and Neuro"
    assert meta["split"] == "train" and "diagnosis_by" not in meta  # "N/A" becomes absent
    # The case without a "Case" part: diagnosis falls back to the topic title, no history.
    no_case = ds.by_case()["MPX0002"][0]
    assert no_case.final_diagnosis == "Colloid Cyst" and no_case.meta["clinical_history"] is None
    third = ds.by_case()["MPX0003"][0]
    assert third.meta["clinical_history"] is None and "sex" not in third.meta
    assert (tmp_path / "out" / "images" / "MPX0003_img1.png").read_bytes() == (
        tiny_medpix / "images" / "MPX0003_img1.png"
    ).read_bytes()
    info = json.loads((tmp_path / "out" / "data" / "dataset.json").read_text())
    assert info["synthetic"] is False and "MedPix" in info["licence"]


def test_tiny_medpix_splits_and_limit(tiny_medpix: Path, tmp_path: Path) -> None:
    dev = convert_medpix(tiny_medpix, tmp_path / "dev", split="dev", images="link")
    assert dev.rows == 1 and dev.cases == 1
    assert (tmp_path / "dev" / "images" / "MPX0003_img1.png").is_symlink()
    train = convert_medpix(tiny_medpix, tmp_path / "train", split="train", limit=2)
    assert train.rows == 2 and {r.meta["split"] for r in read_nova(tmp_path / "train")} == {"train"}
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        convert_medpix(tiny_medpix, tmp_path / "x", split="trian")
    with pytest.raises(ConfigError, match="inside the source"):
        convert_medpix(tiny_medpix, tiny_medpix / "nova")
    with pytest.raises(DatasetError, match="missing"):
        convert_medpix(tmp_path / "dev", tmp_path / "y")


@pytest.mark.shared_data
def test_real_medpix(medpix_root: Path, tmp_path: Path) -> None:
    descriptions = json.loads((medpix_root / "Descriptions.json").read_text(encoding="utf-8"))
    pngs = {p.stem for p in (medpix_root / "images").glob("*.png")}
    head_present = [d for d in descriptions if d["Location Category"] == "Head" and d["image"] in pngs]
    report = convert_medpix(medpix_root, tmp_path / "all", images="link")
    assert report.rows == len(head_present) == len(pngs)
    assert report.cases == len({d["U_id"] for d in head_present})
    assert sum(report.skipped.values()) == len(descriptions) - len(head_present)

    ds = read_nova(tmp_path / "all")
    assert {r.scan_id for r in ds} == pngs
    assert all(r.final_diagnosis for r in ds)
    assert all(r.meta["location_category"] == "Head" for r in ds)
    assert not any("&#" in r.caption_text or "&amp;" in r.final_diagnosis for r in ds)
    splits = json.loads((medpix_root / "splits.json").read_text())
    covered = {r.case_id for r in ds}
    rows = 0
    for name in ("train", "dev"):
        part = convert_medpix(medpix_root, tmp_path / name, split=name, images="link")
        assert part.cases == len(covered & set(splits[name]))
        assert {r.meta["split"] for r in read_nova(tmp_path / name)} == {name}
        rows += part.rows
    assert rows == report.rows
