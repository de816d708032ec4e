"""zebra vlm eval --findings: head accuracies and term F1 against a hand-made MedPix-like folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm.types import Findings, FindingValue, GateResult, ImageAnalysis


class _FixedVLM:
    """Says the same findings for every image: axial CT, hypodense (stated), frontal lobe (cue only)."""

    def analyze_image(self, image):
        f = Findings(
            FindingValue("CT", 0.9, "modality", True),
            FindingValue("ct_noncontrast", 0.5, "sequence", False),
            FindingValue("axial", 0.8, "plane", True),
            [
                FindingValue("hypodense", 0.6, "density", True),
                FindingValue("frontal lobe", 0.3, "site", False, True),
            ],
            "Axial CT",
        )
        gate = GateResult(True, None, "medical", {})
        return ImageAnalysis(gate, 0.9, [], None, None, "Axial CT: hypodense finding.", None, "fixed", f)


@pytest.fixture
def medpix(tmp_path: Path) -> Path:
    root = tmp_path / "medpix"
    (root / "images").mkdir(parents=True)
    records = [
        ("MPX1_a", "MPX1", "CT - noncontrast", "Axial", "Hypodense lesion in the frontal lobe."),
        ("MPX2_a", "MPX2", "MR - T2 weighted", "Axial", "Hyperintense mass."),
        ("MPX3_a", "MPX3", "CT w/contrast (IV)", "Coronal", "Hypodense collection."),
        ("MPX9_a", "MPX9", "CT - noncontrast", "Axial", "Train image, never read for dev."),
    ]
    for stem, *_ in records:
        Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(
            root / "images" / f"{stem}.png"
        )
    (root / "Descriptions.json").write_text(
        json.dumps(
            [
                {"image": s, "U_id": u, "Description": {"Modality": m, "Plane": p, "Caption": c}}
                for s, u, m, p, c in records
            ]
        )
    )
    (root / "splits.json").write_text(json.dumps({"train": ["MPX9"], "dev": ["MPX1", "MPX2", "MPX3"]}))
    return root


def test_head_accuracies_and_term_f1_by_hand(medpix: Path) -> None:
    from vlm.eval.findings_eval import evaluate_findings

    r = evaluate_findings(_FixedVLM(), medpix, split="dev")
    assert r["n_images"] == 3 and r["n_accepted"] == 3
    assert r["modality"] == {
        "n": 3,
        "accuracy": round(2 / 3, 4),
        "stated_share": 1.0,
        "stated_accuracy": round(2 / 3, 4),
    }
    assert r["plane"]["accuracy"] == round(2 / 3, 4)
    # sequence: right once (MPX1) but never stated
    assert r["sequence"]["accuracy"] == round(1 / 3, 4) and r["sequence"]["stated_share"] == 0.0
    # stated terms {hypodense} on each image; gold {hypodense, lesion, frontal lobe}, {hyperintense, mass},
    # {hypodense}: tp 2, fp 1, fn 4 -> F1 = 4 / (4 + 1 + 4)
    assert r["terms"]["f1"] == round(4 / 9, 4)
    assert len(r["pairs"]) == 3


def test_cli_caption_term_f1(medpix: Path) -> None:
    from zebra_cli.vlm import findings_report

    r = findings_report(_FixedVLM(), medpix, "dev")
    c = r["caption_term_f1"]
    assert c["n_captions"] == 3 and 0.0 < c["f1"] < 1.0 and "examples" in r and "pairs" not in r
