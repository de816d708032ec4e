"""YOLO converter: polygons and boxes to pixel boxes, no-finding classes, empty labels; the real set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from zebra.errors import ConfigError, DatasetError
from zebra_datasets.convert import convert_yolo
from zebra_datasets.convert.yolo import is_normal_class
from zebra_datasets.nova import read_nova


def test_tiny_yolo_set(tiny_yolo: Path, tmp_path: Path) -> None:
    report = convert_yolo(tiny_yolo, tmp_path / "out", split="valid")
    assert report.rows == 5 and report.cases == 5 and report.boxes == 3
    assert report.extra["label_status"] == {"labelled": 2, "normal": 1, "unlabelled": 2}
    ds = read_nova(tmp_path / "out")
    by_id = {r.case_id: r for r in ds}
    a = by_id["a"]
    # Polygon extents in pixels of the 40x20 image.
    assert [round(v, 6) for v in a.bboxes[0].xyxy()] == [4.0, 4.0, 12.0, 8.0]
    assert a.bboxes[0].source == "gold" and a.bboxes[0].label == "Glioma"
    assert a.final_diagnosis == "Glioma" and a.scan_id == "a" and a.filename == "a.png"
    b = by_id["b"]
    assert b.final_diagnosis == "Meningioma; Pituitary"
    assert [x.label for x in b.bboxes] == ["Meningioma", "Pituitary"]
    assert [round(v, 6) for v in b.bboxes[0].xyxy()] == [16.0, 9.0, 24.0, 11.0]
    assert json.loads(b.meta["classes"]) == ["Meningioma", "Pituitary"]
    c = by_id["c"]
    assert c.bboxes == [] and c.final_diagnosis == "No_Tumor" and c.meta["label_status"] == "normal"
    assert json.loads(c.meta["outline_boxes"]) == [[2.0, 1.0, 36.0, 18.0]]
    for stem in ("d", "e"):
        assert by_id[stem].bboxes == [] and by_id[stem].meta["final_diagnosis"] is None
        assert by_id[stem].meta["label_status"] == "unlabelled"
    assert report.notes == {"empty label file (kept, unlabelled)": 1, "no label file (kept, unlabelled)": 1}


def test_yolo_splits_and_errors(tiny_yolo: Path, tmp_path: Path) -> None:
    both = convert_yolo(tiny_yolo, tmp_path / "all", split="all", limit=7)
    assert both.rows == 7
    ds = read_nova(tmp_path / "all")
    # Same stems in two splits: file names get the split as prefix so nothing is overwritten.
    assert len({r.filename for r in ds}) == 7 and {r.meta["split"] for r in ds} == {"train", "valid"}
    assert convert_yolo(tiny_yolo, tmp_path / "val", split="val").rows == 5  # alias of valid
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        convert_yolo(tiny_yolo, tmp_path / "x", split="trian")
    (tiny_yolo / "data.yaml").write_text("nc: 2\n")
    with pytest.raises(DatasetError, match="names"):
        convert_yolo(tiny_yolo, tmp_path / "y")


def test_default_converts_every_split_present(tiny_yolo: Path, tmp_path: Path) -> None:
    import shutil

    report = convert_yolo(tiny_yolo, tmp_path / "every")
    assert report.split == "train+valid" and {r.meta["split"] for r in read_nova(tmp_path / "every")} == {
        "train",
        "valid",
    }
    # a set with only a test split converts without --split (it failed with "no split None")
    only_test = tmp_path / "only-test"
    shutil.copytree(tiny_yolo, only_test)
    shutil.rmtree(only_test / "train")
    (only_test / "valid").rename(only_test / "test")
    report = convert_yolo(only_test, tmp_path / "test-out")
    assert report.split == "test" and report.rows == 5


def test_normal_class_names() -> None:
    assert all(is_normal_class(n) for n in ("No_Tumor", "no tumour", "Normal", "healthy", "no-finding"))
    assert not any(is_normal_class(n) for n in ("Glioma", "Meningioma", "Pituitary", "tumor"))


@pytest.mark.shared_data
def test_real_tumour_set_valid_split(tumor_root: Path, tmp_path: Path) -> None:
    names = yaml.safe_load((tumor_root / "data.yaml").read_text())["names"]
    images = sorted((tumor_root / "valid" / "images").iterdir())
    report = convert_yolo(tumor_root, tmp_path / "valid", split="valid", images="link")
    assert report.rows == len(images) and report.extra["class_names"] == names
    ds = read_nova(tmp_path / "valid")
    assert len(ds) == len(images)
    sizes = {}
    for path in images:
        with Image.open(path) as img:
            sizes[path.stem] = img.size
    labels_seen: set[str] = set()
    for record in ds:
        assert record.case_id == Path(record.filename).stem
        for box in record.bboxes:
            w, h = sizes[record.case_id]
            assert box.within(w, h) and box.area > 0 and box.source == "gold"
            labels_seen.add(box.label or "")
        if record.final_diagnosis:
            assert set(record.final_diagnosis.split("; ")) <= set(names)
    assert labels_seen == set(names) - {"No_Tumor"}
    assert report.boxes == sum(len(r.bboxes) for r in ds) > 600
