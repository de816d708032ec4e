"""Finding heads (vlm.findings, vlm.train.findings): vocabulary, labels, persistence, calibration, captions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlm.findings import (
    FindingsModel,
    LinearHead,
    findings_sentence,
    load_vocabulary,
    modality_class,
    plane_class,
    sequence_class,
)
from vlm.types import Findings, FindingValue

MEDPIX = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "medpix-2.0"


def test_vocabulary_longest_match_negation_and_hyphens() -> None:
    vocab = load_vocabulary()
    found = vocab.extract(
        "Axial CT: ring-enhancing lesion in the left frontal lobe. No hemorrhage; no edema."
    )
    assert {"ring enhancement", "lesion", "left", "frontal lobe"} <= found
    assert "enhancement" not in found  # claimed by the longer spelling
    assert "hemorrhage" not in found and "edema" not in found  # negated in their clauses
    assert vocab.extract("Bilateral extra-axial collections over the convexities") >= {
        "bilateral",
        "extra-axial",
        "convexity",
    }
    assert vocab.group_of("hypodense") == "density" and vocab.group_of("hyperintense") == "signal"


def test_label_mappings_from_medpix_fields() -> None:
    assert modality_class("CT - noncontrast") == "CT" and modality_class("MRA - MR Angiography") == "MR"
    assert modality_class("Drawing") is None
    assert sequence_class("MR - T1W w/Gadolinium") == "t1c"
    assert sequence_class("MR - T1W w/Gd (fat suppressed)") == "t1c"
    assert sequence_class("MR - T1W - noncontrast") == "t1"
    assert sequence_class("CT w/contrast (IV)") == "ct_contrast"
    assert sequence_class("MR - Montage") is None
    assert plane_class("Transverse") == "axial" and plane_class("3D Reconstruction") is None


def _tiny_model(rng: np.random.Generator, dim: int = 6) -> FindingsModel:
    vocab = load_vocabulary()
    names = ("hypodense", "hyperintense", "extra-axial", "frontal lobe")
    heads = {
        "modality": LinearHead(("CT", "MR"), rng.normal(size=(2, 3)), np.zeros(2), np.ones(1), 0.5),
        "plane": LinearHead(
            ("axial", "coronal", "sagittal"), rng.normal(size=(3, 3)), np.zeros(3), np.ones(1), 0.5
        ),
        "terms": LinearHead(
            names,
            rng.normal(size=(4, 3)),
            np.zeros(4),
            np.ones(4),
            0.3,
            kind="sigmoid",
            groups=tuple(vocab.group_of(n) for n in names),
        ),
    }
    # a Fortran-ordered projection: safetensors writes raw buffers, so save() must make it C-ordered
    proj = np.asfortranarray(rng.normal(size=(dim, 3)))
    return FindingsModel(rng.normal(size=dim), rng.uniform(0.5, 2, size=dim), heads, {"cv": {}}, proj)


def test_save_load_round_trip_keeps_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = _tiny_model(rng)
    x = rng.normal(size=(5, 6))
    block = model.save(tmp_path / "m.findings.safetensors")
    loaded = FindingsModel.load(json.loads(json.dumps(block)), tmp_path)
    for name, p in model.probabilities(x).items():
        np.testing.assert_allclose(loaded.probabilities(x)[name], p, rtol=1e-4, atol=1e-5)
    assert [f.to_dict() for f in loaded.predict(x)] == [f.to_dict() for f in model.predict(x)]


def test_load_refuses_a_file_that_does_not_match(tmp_path: Path) -> None:
    from zebra.errors import ModelError

    model = _tiny_model(np.random.default_rng(1))
    block = model.save(tmp_path / "m.findings.safetensors")
    with pytest.raises(ModelError, match="do not match"):
        FindingsModel.load({**block, "sha256": "0" * 64}, tmp_path)
    (tmp_path / "m.findings.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        FindingsModel.load(block, tmp_path)


def test_ct_is_described_in_density_and_mr_in_signal() -> None:
    model = _tiny_model(np.random.default_rng(2))
    # force every term above threshold, modality CT then MR
    model.heads["terms"].intercept = np.full(4, 10.0)
    for modality, said, unsaid in (("CT", "hypodense", "hyperintense"), ("MR", "hyperintense", "hypodense")):
        model.heads["modality"].coef = np.zeros((2, 3))
        model.heads["modality"].intercept = (
            np.array([10.0, 0.0]) if modality == "CT" else np.array([0.0, 10.0])
        )
        f = model.predict(np.zeros((1, 6)))[0]
        assert f.modality.value == modality and f.modality.stated
        assert said in f.stated_terms() and unsaid not in f.stated_terms()
        assert {t.value for t in f.terms} >= {said, unsaid}  # both still reported with probabilities


def test_findings_sentence_in_a_radiologists_order() -> None:
    f = Findings(
        modality=FindingValue("CT", 0.97, "modality", True),
        sequence=FindingValue("ct_noncontrast", 0.8, "sequence", True),
        plane=FindingValue("axial", 0.95, "plane", True),
        terms=[
            FindingValue("hypodense", 0.6, "density", True),
            FindingValue("bilateral", 0.5, "side", True),
            FindingValue("extra-axial", 0.45, "compartment", True),
            FindingValue("convexity", 0.4, "site", True),
            FindingValue("mass effect", 0.35, "appearance", True),
            FindingValue("frontal lobe", 0.1, "site", False),
        ],
    )
    from vlm.findings import header_text

    f.header = header_text(f)
    assert f.header == "Axial non-contrast CT"
    text = findings_sentence(f)
    assert text.startswith(
        "Axial non-contrast CT: bilateral hypodense extra-axial finding involving the convexity"
    )
    assert "mass effect" in text and "frontal" not in text  # the unconfident term is not said


def test_unconfident_header_parts_are_left_out() -> None:
    from vlm.findings import header_text

    f = Findings(
        modality=FindingValue("MR", 0.95, "modality", True),
        sequence=FindingValue("t2", 0.4, "sequence", False),
        plane=FindingValue("sagittal", 0.5, "plane", False),
    )
    assert header_text(f) == "MR"


def test_fit_single_head_learns_and_calibrates() -> None:
    from vlm.train.findings import fit_single_head

    rng = np.random.default_rng(3)
    n = 240
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 8))
    x[np.arange(n), y] += 3.0  # separable classes
    labels = [("axial", "coronal", "sagittal")[i] for i in y]
    labels[0] = None  # unlabelled rows are left out
    head, report = fit_single_head(
        x, labels, ("axial", "coronal", "sagittal"), [str(i // 2) for i in range(n)]
    )
    assert report["n"] == n - 1 and report["oof_accuracy"] > 0.85
    assert report["threshold"] < 1.0 and report["oof_stated_accuracy"] >= 0.9
    z = x @ head.coef.T + head.intercept
    assert (np.argmax(z, 1)[1:] == y[1:]).mean() > 0.9


def test_fit_refuses_dev(tmp_path: Path) -> None:
    from vlm.train.findings import fit_findings
    from zebra.errors import ConfigError

    with pytest.raises(ConfigError, match="dev"):
        fit_findings(object(), tmp_path, split="dev")


def test_shipped_checkpoint_states_findings_on_a_real_head_image() -> None:
    if not (MEDPIX / "images").is_dir():
        pytest.skip("MedPix 2.0 not available")
    from vlm.registry import create_vlm
    from zebra_intake import load_study

    vlm = create_vlm("builtin")
    assert vlm.findings_model is not None and vlm.findings_model.meta["data"]["medpix"].endswith(
        "(Descriptions.json: Modality, Plane, Caption)"
    )
    path = next((MEDPIX / "images").glob("MPX1770_*.png"), None) or next((MEDPIX / "images").glob("*.png"))
    a = vlm.analyze_image(load_study(str(path)).images[0].display)
    assert a.gate.accepted and a.findings is not None
    assert a.findings.modality is not None and a.findings.modality.value in ("CT", "MR")
    assert 0.0 <= a.findings.modality.confidence <= 1.0
    assert a.caption.startswith(a.findings.header) if a.findings.header else True
    data = a.to_dict()
    assert data["findings"]["modality"]["value"] == a.findings.modality.value


def test_fit_write_and_use_end_to_end(tiny_checkpoint, tmp_path: Path) -> None:
    """fit_findings on a labelled synthetic MedPix-like folder (bright = CT with "hyperdense" captions, dark =
    MR): the heads learn it, are written beside a copy of the checkpoint, and the backend states them."""
    import shutil

    from PIL import Image

    from vlm.backends.builtin import BuiltinVLM
    from vlm.train.findings import fit_findings, write_findings

    root = tmp_path / "medpix"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    descriptions, train = [], []
    for i in range(60):
        ct = i % 2 == 0
        img = rng.normal(200 if ct else 50, 10, (48, 48)).clip(0, 255).astype(np.uint8)
        stem = f"MPX{i}_a"
        Image.fromarray(img).save(root / "images" / f"{stem}.png")
        caption = "Axial CT: hyperdense lesion in the left frontal lobe." if ct else "Axial T2: mass."
        modality = "CT - noncontrast" if ct else "MR - T2 weighted"
        descriptions.append(
            {
                "image": stem,
                "U_id": f"MPX{i}",
                "Description": {"Modality": modality, "Plane": "Axial", "Caption": caption},
            }
        )
        train.append(f"MPX{i}")
    (root / "Descriptions.json").write_text(json.dumps(descriptions))
    (root / "splits.json").write_text(json.dumps({"train": train, "dev": []}))
    ckpt = tmp_path / "ckpt" / "tiny.safetensors"
    ckpt.parent.mkdir()
    shutil.copy(tiny_checkpoint, ckpt)
    shutil.copy(tiny_checkpoint.with_suffix(".json"), ckpt.with_suffix(".json"))
    model = fit_findings(BuiltinVLM(ckpt), root)
    cv = model.meta["cv"]
    assert cv["modality"]["oof_accuracy"] > 0.9 and cv["modality"]["class_counts"] == {"CT": 30, "MR": 30}
    assert "hyperdense" in cv["terms"]["positives"] and cv["terms"]["query_threshold"] < 0.5
    block = write_findings(ckpt, model)
    assert (ckpt.parent / block["file"]).is_file()
    assert json.loads(ckpt.with_suffix(".json").read_text())["findings"]["sha256"] == block["sha256"]
    vlm = BuiltinVLM(ckpt)
    bright = rng.normal(200, 10, (48, 48)).clip(0, 255).astype(np.uint8)
    raw = vlm.predict([bright])[0]
    f = vlm.findings_model.predict(raw.findings)[0]
    assert f.modality.value == "CT" and f.modality.confidence > 0.5
