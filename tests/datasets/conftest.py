"""Helpers shared by the data set tests: tiny images and a hand-made MedPix-like folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, size: tuple[int, int] = (32, 24), value: int = 90) -> Path:
    """Writes a small greyscale PNG with a gradient so that images differ by ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    array = (np.add.outer(np.arange(h), np.arange(w)) + value) % 256
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def tiny_medpix(tmp_path: Path) -> Path:
    """A MedPix-2.0-like folder: 3 cases (one without ``Case``), 5 described images, one PNG missing."""
    root = tmp_path / "medpix"
    cases = [
        {
            "U_id": "MPX0001",
            "TAC": ["MPX0001_img1"],
            "MRI": ["MPX0001_img2"],
            "Case": {
                "Title": "Takayasu&#34;s Arteritis",
                "History": "  45 y/o  woman with\theadache.\r\n\r\n\r\n\r\nWorse at night. ",
                "Exam": "Normal Exam &amp; Labs",
                "Findings": "<p>Enhancing mass</p><br>right frontal",
                "Differential Diagnosis": "Glioma\nMetastasis",
                "Case Diagnosis": "Broca&#39;s area infarct",
                "Diagnosis By": "N/A",
            },
            "Topic": {
                "Title": "Infarct",
                "ACR Code": "1.3",
                "Category": "Vascular",
                "Disease Discussion": "...",
            },
        },
        {
            # No "Case" part at all: must be accepted, diagnosis from Topic.Title.
            "U_id": "MPX0002",
            "TAC": [],
            "MRI": ["MPX0002_img1", "MPX0002_missing"],
            "Topic": {"Title": "Colloid Cyst", "ACR Code": "1.8", "Category": "Neoplasm, benign"},
        },
        {
            "U_id": "MPX0003",
            "TAC": ["MPX0003_img1"],
            "MRI": [],
            "Case": {"Title": "Chordoma", "History": "N/A", "Case Diagnosis": "Chordoma"},
            "Topic": {"Title": "Chordoma", "ACR Code": "1.3", "Category": "Neoplasm"},
        },
    ]

    def desc(uid: str, image: str, kind: str, caption: str, category: str = "Head") -> dict:
        return {
            "Type": kind,
            "U_id": uid,
            "image": image,
            "Description": {
                "ACR Codes": "1.3",
                "Age": "45",
                "Caption": caption,
                "Figure Part": None,
                "Modality": "MR - T2 weighted" if kind == "MR" else "CT - noncontrast",
                "Plane": "Axial",
                "Sex": "N/A" if uid == "MPX0003" else "female",
            },
            "Location": "Brain and Neuro",
            "Location Category": category,
        }

    descriptions = [
        desc("MPX0001", "MPX0001_img1", "CT", "< li > Well circumscribed   mass (<5mm) &amp; edema"),
        desc("MPX0001", "MPX0001_img2", "MR", "T2 bright lesion."),
        desc("MPX0002", "MPX0002_img1", "MR", "Cyst at the foramen of Monro."),
        desc("MPX0002", "MPX0002_missing", "MR", "This image is not shipped.", category="Thorax"),
        desc("MPX0003", "MPX0003_img1", "CT", "Clival mass."),
    ]
    root.mkdir()
    (root / "Case_topic.json").write_text(json.dumps(cases), encoding="utf-8")
    (root / "Descriptions.json").write_text(json.dumps(descriptions), encoding="utf-8")
    (root / "splits.json").write_text(json.dumps({"train": ["MPX0001", "MPX0002"], "dev": ["MPX0003"]}))
    for i, name in enumerate(["MPX0001_img1", "MPX0001_img2", "MPX0002_img1", "MPX0003_img1"]):
        write_png(root / "images" / f"{name}.png", value=10 * i)
    return root


@pytest.fixture
def tiny_yolo(tmp_path: Path) -> Path:
    """A YOLO set: 4 classes incl. No_Tumor, polygon and box lines, an empty and a missing label file."""
    root = tmp_path / "yolo"
    (root / "data.yaml").parent.mkdir(parents=True)
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 4\nnames: ['Glioma', 'Meningioma', 'No_Tumor', 'Pituitary']\n"
    )
    labels = {
        "a": "0 0.1 0.2 0.3 0.2 0.3 0.4 0.1 0.4\n",  # polygon -> x 0.1..0.3, y 0.2..0.4
        "b": "1 0.5 0.5 0.2 0.1\n3 0.25 0.25 0.5 0.5\n",  # two boxes (cx cy w h), two classes
        "c": "2 0.05 0.05 0.95 0.05 0.95 0.95 0.05 0.95\n",  # No_Tumor outline
        "d": "",  # empty file
        "e": None,  # no label file
    }
    for split in ("valid", "train"):
        for i, (stem, text) in enumerate(labels.items()):
            write_png(root / split / "images" / f"{stem}.png", size=(40, 20), value=i)
            if text is not None:
                (root / split / "labels").mkdir(parents=True, exist_ok=True)
                (root / split / "labels" / f"{stem}.txt").write_text(text)
    return root


@pytest.fixture
def png():
    """The :func:`write_png` helper, as a fixture (test modules cannot import conftest)."""
    return write_png
