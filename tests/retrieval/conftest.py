"""Tiny bundles built with deterministic test embedders (no model weights)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

COLOR_SPEC = "d2color"


class ColorEmbedder:
    """A 4-d toy CLIP: images map to their mean RGB, texts to counts of "red"/"green"/"blue".

    Both towers share the space, so cross-modal search is meaningful and exactly predictable.
    """

    name = "color-4"
    dim = 4
    checkpoint_sha256 = None
    seeded_random = False

    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def encode_images(self, images: Sequence, **_: object) -> np.ndarray:
        rows = []
        for img in images:
            arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img, dtype=np.float32) / 255.0
            rows.append([*arr.reshape(-1, 3).mean(axis=0), 0.05])
        return self._unit(np.asarray(rows, dtype=np.float32))

    def encode_texts(self, texts: Sequence[str], **_: object) -> np.ndarray:
        rows = []
        for text in texts:
            words = text.lower().split()
            rows.append([words.count("red"), words.count("green"), words.count("blue"), 0.05])
        return self._unit(np.asarray(rows, dtype=np.float32))

    def describe(self) -> dict:
        return {
            "spec": COLOR_SPEC,
            "name": self.name,
            "dim": self.dim,
            "arch": "toy",
            "checkpoint_sha256": None,
            "seeded_random": False,
        }


def _register_color_embedder() -> None:
    from index_builder.embedders import IMAGE_EMBEDDERS

    if COLOR_SPEC not in IMAGE_EMBEDDERS:
        IMAGE_EMBEDDERS.register(COLOR_SPEC, help="test colour embedder")(lambda arg="", **_: ColorEmbedder())


DOCS = [
    {
        "id": "c1",
        "kind": "case_report",
        "title": "Case 1",
        "text": "A 45-year-old woman with headaches. MRI shows a dural based extra-axial mass with a dural tail. "
        "It enhances homogeneously.",
        "diagnosis": "Meningioma",
        "modality": "MR",
        "body_region": "Head",
    },
    {
        "id": "c2",
        "kind": "case_report",
        "title": "Case 2",
        "text": "Hearing loss. Enhancing mass in the internal auditory canal extending into the cerebellopontine angle.",
        "diagnosis": "Vestibular schwannoma",
        "modality": "MR",
        "body_region": "Head",
    },
    {
        "id": "d1",
        "kind": "disease_discussion",
        "title": "Meningioma",
        "text": "Meningioma is the most common extra-axial tumour of adults. A dural tail sign is typical.",
        "diagnosis": "Meningioma",
        "url": "https://example.org/meningioma",
    },
    {
        "id": "c3",
        "kind": "case_report",
        "title": "Case 3",
        "text": "Right lower quadrant pain. CT shows a dilated appendix with periappendiceal fat stranding.",
        "diagnosis": "Appendicitis",
        "modality": "CT",
        "body_region": "Abdomen",
    },
    {
        "id": "long",
        "kind": "literature",
        "title": "Review of posterior fossa tumours",
        "text": " ".join(
            f"Paragraph {i} discusses cerebellar medulloblastoma, ependymoma and pilocytic astrocytoma in children."
            for i in range(40)
        ),
        "diagnosis": None,
    },
]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five documents (one long, several chunks) indexed with the hashing embedder."""
    from index_builder.build import build_bundle

    root = tmp_path_factory.mktemp("tiny")
    src = root / "docs.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
    build_bundle(root / "bundle", [f"jsonl:{src}"], text_embedder="hash:64")
    return root / "bundle"


def _png(path: Path, rgb: tuple[int, int, int]) -> None:
    from PIL import Image

    Image.new("RGB", (16, 16), rgb).save(path)


def write_medpix(root: Path) -> Path:
    """A three-case MedPix 2.0 look-alike with coloured images and captions."""
    cases = [
        ("MPX1", "Meningioma", "Headache. Red enhancing dural mass.", ["MPX1_a", "MPX1_b"], []),
        (
            "MPX2",
            "Vestibular schwannoma",
            "Hearing loss. Green mass in the internal auditory canal.",
            [],
            ["MPX2_a"],
        ),
        ("MPX3", "Appendicitis", "Abdominal pain. Blue dilated appendix.", ["MPX3_a"], []),
    ]
    records, descriptions = [], []
    colors = {"MPX1_a": (250, 0, 0), "MPX1_b": (150, 10, 10), "MPX2_a": (0, 240, 0), "MPX3_a": (0, 0, 240)}
    captions = {
        "MPX1_a": "red mass",
        "MPX1_b": "dark red mass",
        "MPX2_a": "green mass",
        "MPX3_a": "blue appendix",
    }
    (root / "images").mkdir(parents=True)
    for uid, dx, findings, ct, mr in cases:
        records.append(
            {
                "U_id": uid,
                "TAC": ct,
                "MRI": mr,
                "Case": {"Title": dx, "History": "History.", "Findings": findings, "Case Diagnosis": dx},
                "Topic": {
                    "Title": dx,
                    "Disease Discussion": f"{dx} discussion.",
                    "ACR Code": "1.1",
                    "Category": "x",
                },
            }
        )
        for stem in ct + mr:
            _png(root / "images" / f"{stem}.png", colors[stem])
            descriptions.append(
                {
                    "Type": "CT" if stem in ct else "MR",
                    "U_id": uid,
                    "image": stem,
                    "Description": {"Caption": captions[stem], "Modality": "x", "Plane": "Axial"},
                    "Location": "Head",
                    "Location Category": "Head",
                }
            )
    (root / "Case_topic.json").write_text(json.dumps(records))
    (root / "Descriptions.json").write_text(json.dumps(descriptions))
    (root / "splits.json").write_text(json.dumps({"train": ["MPX1", "MPX2", "MPX3"], "dev": []}))
    return root


@pytest.fixture(scope="session")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MedPix look-alike indexed with the hashing text embedder and the colour image embedder."""
    from index_builder.build import build_bundle

    _register_color_embedder()
    root = tmp_path_factory.mktemp("img")
    medpix = write_medpix(root / "medpix")
    build_bundle(
        root / "bundle",
        [f"medpix:{medpix}", f"medpix-images:{medpix}"],
        text_embedder="hash:64",
        image_embedder=COLOR_SPEC,
    )
    return root / "bundle"
