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
    assert report["threshold"] == 0.9 and report["oof_stated_accuracy"] >= 0.9  # stated from p >= 0.9
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


def _stacked_model(rng: np.random.Generator) -> FindingsModel:
    """The tiny model with its term head split in two stages: ``terms_base`` on the features, ``terms`` on
    ``terms_base`` logits + the modality and plane probabilities."""
    model = _tiny_model(rng)
    base = model.heads.pop("terms")
    model.heads["terms_base"] = base
    model.heads["terms"] = LinearHead(
        base.classes,
        rng.normal(size=(4, 4 + 2 + 3)),
        rng.normal(size=4),
        np.full(4, 1.5),
        0.5,
        kind="sigmoid",
        groups=base.groups,
        query_threshold=0.2,
        inputs=("terms_base", "modality", "plane"),
    )
    return model


def test_stacked_term_head_reads_the_first_stage_logits_and_context() -> None:
    from vlm.findings import stack_inputs

    rng = np.random.default_rng(4)
    model = _stacked_model(rng)
    x = rng.normal(size=(3, 6))
    probs = model.probabilities(x)
    # by hand: standardise, project, first stage, then the second stage on [logit(base), p(modality), p(plane)]
    z = ((x - model.mean) / model.scale) @ model.proj
    base = model.heads["terms_base"].probabilities(z)
    inputs = np.concatenate(
        [
            np.log(base / (1 - base)),
            model.heads["modality"].probabilities(z),
            model.heads["plane"].probabilities(z),
        ],
        axis=1,
    )
    np.testing.assert_allclose(
        stack_inputs(probs, model.heads, model.heads["terms"].inputs), inputs, rtol=1e-6
    )
    head = model.heads["terms"]
    expected = 1 / (1 + np.exp(-((inputs @ head.coef.T + head.intercept) / head.temperature)))
    np.testing.assert_allclose(probs["terms"], expected, rtol=1e-6)
    # the findings use the stacked head, not the first stage
    f = model.predict(x)[0]
    by_name = {t.value: t.confidence for t in f.terms}
    np.testing.assert_allclose([by_name[n] for n in head.classes], probs["terms"][0], rtol=1e-4)


def test_stacked_head_survives_save_and_load_and_bad_inputs_are_refused(tmp_path: Path) -> None:
    from zebra.errors import ModelError

    rng = np.random.default_rng(5)
    model = _stacked_model(rng)
    x = rng.normal(size=(4, 6))
    block = model.save(tmp_path / "s.findings.safetensors")
    assert block["heads"]["terms"]["inputs"] == ["terms_base", "modality", "plane"]
    loaded = FindingsModel.load(json.loads(json.dumps(block)), tmp_path)
    np.testing.assert_allclose(loaded.probabilities(x)["terms"], model.probabilities(x)["terms"], rtol=1e-4)
    bad = json.loads(json.dumps(block))
    bad["heads"]["terms"]["inputs"] = ["terms_base", "sequence"]
    with pytest.raises(ModelError, match=r"reads \['sequence'\].*Heads present"):
        FindingsModel.load(bad, tmp_path)


def test_uncertain_terms_are_said_only_hedged_one_side_at_most() -> None:
    from vlm.findings import MAX_POSSIBLE, header_text, possible_terms

    f = Findings(
        modality=FindingValue("MR", 0.97, "modality", True),
        plane=FindingValue("axial", 0.95, "plane", True),
        terms=[
            FindingValue("hyperintense", 0.62, "signal", True, True),
            FindingValue("right", 0.40, "side", False, True),
            FindingValue("mass", 0.35, "appearance", False, True),
            FindingValue("left", 0.33, "side", False, True),
            FindingValue("edema", 0.30, "appearance", False, True),
            FindingValue("cystic", 0.28, "appearance", False, True),
            FindingValue("ventricle", 0.25, "site", False, True),
            FindingValue("pons", 0.22, "site", False, True),
            FindingValue("hemorrhage", 0.21, "appearance", False, True),
            FindingValue("frontal lobe", 0.05, "site", False, False),
        ],
    )
    f.header = header_text(f)
    possible = possible_terms(f)
    assert possible[:3] == ["right", "mass", "edema"] and "left" not in possible  # one side, most probable
    assert len(possible) == MAX_POSSIBLE and "frontal lobe" not in possible  # not a cue: never said
    text = findings_sentence(f)
    first, _, hedge = text.partition(" Possible (less likely than not): ")
    assert first == "Axial MR: hyperintense finding." and hedge == ", ".join(possible) + "."
    # a stated side silences the hedged ones
    f.terms[3] = FindingValue("left", 0.7, "side", True, True)
    assert not {"right", "left"} & set(possible_terms(f))


def test_stacked_fit_learns_what_the_context_tells() -> None:
    """A term said only on MR images that also show a bright spot: the first stage sees the spot, the modality
    head sees MR; the stacked stage, reading both, beats the first stage alone out of fold."""
    from vlm.train.findings import _micro_f1, fit_stacked_terms

    rng = np.random.default_rng(6)
    n = 400
    mr = rng.random(n) < 0.5
    spot = rng.random(n) < 0.5
    y = (mr & spot).astype(float)[:, None]
    base_logit = np.where(spot, 1.0, -2.0)[:, None] + rng.normal(0, 0.3, (n, 1))
    p_mr = np.clip(np.where(mr, 0.9, 0.1) + rng.normal(0, 0.05, n), 0.01, 0.99)
    context = [np.stack([1 - p_mr, p_mr], 1)]
    groups = [str(i // 2) for i in range(n)]
    head, report, _ = fit_stacked_terms(
        base_logit,
        context,
        y,
        groups,
        names=("hyperintense",),
        term_groups=("signal",),
        inputs=("terms_base", "modality"),
    )
    base_f1 = max(_micro_f1(1 / (1 + np.exp(-base_logit)) >= t, y) for t in np.arange(0.05, 0.95, 0.05))
    assert report["oof_micro_f1_caption_policy"] > base_f1 + 0.1
    assert head.inputs == ("terms_base", "modality") and 0.0 < head.query_threshold < 0.5
    # the weights apply to the raw stacked inputs (standardisation folded in)
    z = np.concatenate([base_logit, *context], 1) @ head.coef.T + head.intercept
    assert ((z[:, 0] > 0) == y[:, 0].astype(bool)).mean() > 0.9


def test_terms_carry_their_training_base_rate() -> None:
    rng = np.random.default_rng(7)
    model = _tiny_model(rng)
    model.meta = {
        "data": {"n_images": 200},
        "cv": {"terms": {"positives": {"hypodense": 50, "frontal lobe": 10}}},
    }
    f = model.predict(rng.normal(size=(1, 6)))[0]
    prior = {t.value: t.prior for t in f.terms}
    assert prior["hypodense"] == 0.25 and prior["frontal lobe"] == 0.05 and prior["extra-axial"] is None
    again = Findings.from_dict(json.loads(json.dumps(f.to_dict())))
    assert {t.value: t.prior for t in again.terms} == prior


@pytest.mark.parametrize(
    ("modality", "sequence", "said"),
    [
        (("MR", 0.97, True), ("t2", 0.52, False), True),  # uncertain sequence, confident modality: hedged
        (("MR", 0.97, True), ("t2", 0.29, False), False),  # below SEQUENCE_HINT
        (("MR", 0.97, True), ("t2", 0.80, True), False),  # stated in the header instead
        (("MR", 0.74, False), ("t2", 0.52, False), False),  # no modality: no sequence either
    ],
)
def test_an_uncertain_sequence_is_said_hedged_with_its_probability(modality, sequence, said) -> None:
    from vlm.findings import SEQUENCE_HINT, header_text, sequence_hint

    f = Findings(
        modality=FindingValue(modality[0], modality[1], "modality", modality[2]),
        sequence=FindingValue(sequence[0], sequence[1], "sequence", sequence[2]),
        plane=FindingValue("axial", 0.95, "plane", True),
        terms=[
            FindingValue("hyperintense", 0.62, "signal", True, True),
            FindingValue("mass", 0.35, "appearance", False, True),
        ],
    )
    f.header = header_text(f)
    text = findings_sentence(f)
    hint = sequence_hint(f)
    assert bool(hint) is said and (sequence[1] >= SEQUENCE_HINT or not said)
    if said:
        assert hint == f"Sequence uncertain: most likely T2-weighted MR (probability {sequence[1]:.2f})."
        # in order: what is stated, then the uncertain sequence, then the uncertain terms
        assert text == f"Axial MR: hyperintense finding. {hint} Possible (less likely than not): mass."
    else:
        assert "Sequence uncertain" not in text
