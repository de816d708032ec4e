"""The tumour-type head and its applicability domain (vlm.train.tumour_type, vlm.findings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlm.findings import (
    IN_DOMAIN,
    NO_TUMOUR,
    TUMOUR_DOMAIN,
    TUMOUR_GROUP,
    TUMOUR_TYPE,
    FindingsModel,
    LinearHead,
    findings_sentence,
)

TUMOR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "brain-tumor-mri"
MEDPIX = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "medpix-2.0"
KINDS = ("glioma", "meningioma", NO_TUMOUR, "pituitary adenoma")


def _model(kind: str, kind_logit: float, domain_logit: float, modality: str = "MR") -> FindingsModel:
    """Heads that read nothing (zero weights): their intercepts set the probabilities."""
    d = 4

    def head(classes, intercept, threshold, **kw):
        return LinearHead(
            tuple(classes), np.zeros((len(classes), d)), np.array(intercept), np.ones(1), threshold, **kw
        )

    kinds = [kind_logit if k == kind else 0.0 for k in KINDS]
    heads = {
        "modality": head(("CT", "MR"), [10.0, 0.0] if modality == "CT" else [0.0, 10.0], 0.9),
        TUMOUR_TYPE: head(KINDS, kinds, 0.9, query_threshold=0.5),
        TUMOUR_DOMAIN: head(("other", IN_DOMAIN), [0.0, domain_logit], 0.9),
    }
    return FindingsModel(np.zeros(d), np.ones(d), heads, {})


def _kind_term(model: FindingsModel):
    f = model.predict(np.zeros((1, 4)))[0]
    return f, next((t for t in f.terms if t.group == TUMOUR_GROUP), None)


def test_a_confident_type_inside_the_domain_is_stated_and_said() -> None:
    f, t = _kind_term(_model("meningioma", 8.0, 8.0))
    assert t is not None and t.value == "meningioma" and t.stated and t.confidence > 0.99
    text = findings_sentence(f)
    assert "Appearance of a meningioma (tumour-type head, probability 1.00)." in text
    assert "Possible" not in text or "meningioma" not in text.split("Possible")[1]


def test_an_uncertain_type_is_only_hedged() -> None:
    # p(meningioma) = e^1.5 / (e^1.5 + 3) ~ 0.60: a cue, not stated
    f, t = _kind_term(_model("meningioma", 1.5, 8.0))
    assert t is not None and t.cue and not t.stated and 0.5 < t.confidence < 0.9
    text = findings_sentence(f)
    assert "Appearance of" not in text and "meningioma" in text.split("Possible (less likely than not):")[1]


@pytest.mark.parametrize(
    ("kind", "kind_logit", "domain_logit", "modality", "why"),
    [
        ("meningioma", 8.0, -8.0, "MR", "outside the tumour set's domain"),
        ("meningioma", 8.0, 1.0, "MR", "domain probability 0.73 < 0.9"),
        ("meningioma", 8.0, 8.0, "CT", "the tumour set is MR only"),
        (NO_TUMOUR, 8.0, 8.0, "MR", "no tumour is no finding term"),
        ("glioma", 0.5, 8.0, "MR", "p ~ 0.35 is below the cue threshold"),
    ],
)
def test_the_type_is_silent_where_it_cannot_speak(kind, kind_logit, domain_logit, modality, why) -> None:
    f, t = _kind_term(_model(kind, kind_logit, domain_logit, modality))
    assert t is None, why
    assert "Appearance of" not in findings_sentence(f)


def test_without_the_heads_nothing_changes() -> None:
    model = _model("meningioma", 8.0, 8.0)
    del model.heads[TUMOUR_DOMAIN]
    assert _kind_term(model)[1] is None


def test_heads_survive_save_and_load(tmp_path: Path) -> None:
    model = _model("pituitary adenoma", 8.0, 8.0)
    block = model.save(tmp_path / "m.findings.safetensors")
    loaded = FindingsModel.load(json.loads(json.dumps(block)), tmp_path)
    assert loaded.heads[TUMOUR_TYPE].query_threshold == 0.5
    assert _kind_term(loaded)[1].value == "pituitary adenoma"


def _write_yolo(root: Path, n_per_class: int, rng: np.random.Generator) -> None:
    (root / "data.yaml").write_text("names: ['Glioma', 'Meningioma', 'No_Tumor', 'Pituitary']\n")
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for c in range(4):
            for i in range(n_per_class):
                stem = f"src{c}_{i}_jpg.rf.{rng.integers(1 << 30):x}"
                (root / split / "images" / f"{stem}.jpg").write_bytes(b"")
                lines = "" if c == 2 else f"{c} 0.1 0.1 0.2 0.1 0.2 0.2\n"
                (root / split / "labels" / f"{stem}.txt").write_text(lines)


def test_reading_the_tumour_set_labels_groups_and_refusals(tmp_path: Path) -> None:
    from vlm.train.tumour_type import read_tumour_images
    from zebra.errors import ConfigError

    _write_yolo(tmp_path, 15, np.random.default_rng(0))
    images = read_tumour_images(tmp_path)
    assert len(images) == 60
    assert {im.label for im in images} == set(KINDS)
    assert all(im.group.endswith("|" + str(im.label)) and ".rf." not in im.group for im in images)
    for split in ("valid", "test"):
        with pytest.raises(ConfigError, match="Refusing"):
            read_tumour_images(tmp_path, split)


def test_fitted_heads_recognise_the_type_and_the_domain() -> None:
    """Synthetic features: four separable tumour classes on one side of feature space, other images apart."""
    from vlm.train.tumour_type import TumourImage, fit_tumour_heads

    rng = np.random.default_rng(1)
    d = 8
    base = FindingsModel(np.zeros(d), np.ones(d), {}, {"cv": {}})
    n = 60
    labels = [KINDS[i % 4] for i in range(4 * n)]
    xt = rng.normal(size=(4 * n, d))
    xt[np.arange(4 * n), [i % 4 for i in range(4 * n)]] += 4.0
    xt[:, 7] += 4.0  # the tumour set's "look"
    xo = rng.normal(size=(200, d))
    images = [TumourImage(Path(f"{i}.jpg"), lab, f"{i // 2}|{lab}") for i, lab in enumerate(labels)]
    model, reports = fit_tumour_heads(base, xt, images, xo, [str(i) for i in range(200)])
    assert reports[TUMOUR_TYPE]["oof_accuracy"] > 0.9 and reports[TUMOUR_DOMAIN]["oof_accuracy"] > 0.9
    assert model.heads[TUMOUR_TYPE].query_threshold == 0.5 and not base.heads  # the input is not changed
    p = model.probabilities(xt)
    assert (np.array(model.heads[TUMOUR_TYPE].classes)[p[TUMOUR_TYPE].argmax(1)] == labels).mean() > 0.9
    inside = model.heads[TUMOUR_DOMAIN].classes.index(IN_DOMAIN)
    assert (model.probabilities(xo)[TUMOUR_DOMAIN][:, inside] < 0.5).mean() > 0.9


def test_agreement_counts_a_tumour_type_named_in_the_evidence() -> None:
    from agent.features import _agreed

    items = [{"text": "Meningiomas are extra-axial dural-based masses."}, {"text": "No glioma was seen."}]
    assert _agreed(["meningioma", "extra-axial", "pituitary adenoma"], items) == ["meningioma", "extra-axial"]


def test_questions_ignore_a_tumour_type_outside_the_vocabulary() -> None:
    from agent.questions import input_terms

    assert input_terms("", [], ["meningioma", "extra-axial"]) == {"extra-axial"}


@pytest.mark.skipif(not (TUMOR.is_dir() and MEDPIX.is_dir()), reason="needs ../shared/data")
def test_shipped_checkpoint_names_the_tumour_type_on_real_tumour_set_images() -> None:
    """The shipped heads on 24 real tumour-set **valid** images (seen: measured after fitting, docs/vlm.md)."""
    from vlm.backends.builtin import BuiltinVLM
    from vlm.checkpoint import default_checkpoint
    from vlm.train.tumour_type import labelled_tumour_images
    from zebra_intake import load_study

    vlm = BuiltinVLM(default_checkpoint())
    if TUMOUR_TYPE not in (vlm.findings_model.heads if vlm.findings_model else {}):
        pytest.skip("checkpoint without the tumour-type head")
    rows = [im for im in labelled_tumour_images(TUMOR, "valid") if im.label != NO_TUMOUR][::25][:24]
    right = said = 0
    for im in rows:
        f = vlm.analyze_image(load_study(str(im.path)).images[0].display).findings
        kind = next((t for t in f.terms if t.group == TUMOUR_GROUP and t.stated), None)
        said += kind is not None
        right += kind is not None and kind.value == im.label
    # measured: 10 of the 24 stated, all of them right (the domain, MR and 0.9 gates each leave some out)
    assert said >= 8 and right >= 0.85 * said, (said, right)


def test_a_named_tumour_type_gets_its_own_image_query() -> None:
    from agent.evidence import TUMOUR_GROUP as AGENT_GROUP
    from agent.evidence import plan_queries

    assert AGENT_GROUP == TUMOUR_GROUP
    finding = {
        "id": "M1",
        "accepted": True,
        "findings": {
            "header": "Axial MR",
            "terms": [
                {"value": "mass", "group": "appearance", "stated": False, "cue": True, "confidence": 0.3},
                {
                    "value": "meningioma",
                    "group": TUMOUR_GROUP,
                    "stated": True,
                    "cue": True,
                    "confidence": 0.97,
                },
            ],
        },
    }
    queries = plan_queries(
        question="What is it?", intent="diagnosis", history="", captions=[], findings=[finding]
    )
    image = [q for q in queries if q["purpose"] == "image findings"]
    assert [q["text"] for q in image] == ["Axial MR mass meningioma", "meningioma"]
    assert all(q["weight"] == 0.5 for q in image)
    # a rejected image names nothing
    queries = plan_queries(
        question="What is it?",
        intent="diagnosis",
        history="",
        captions=[],
        findings=[{**finding, "accepted": False}],
    )
    assert not [q for q in queries if q["purpose"] == "image findings"]


def test_evaluate_tumour_type_reports_head_domain_and_what_is_said(tmp_path: Path) -> None:
    """A fake backend whose features code each image's intensity; the heads read them exactly."""
    from types import SimpleNamespace

    from PIL import Image

    from vlm.eval.tumour_eval import evaluate_tumour_type

    _write_yolo(tmp_path, 15, np.random.default_rng(2))
    for split in ("train", "valid"):
        for label in (tmp_path / split / "labels").glob("*.txt"):
            c = int(label.read_text().split()[0]) if label.read_text().strip() else 2
            pixels = np.zeros((32, 32), np.uint8)
            pixels[:, : 6 * (c + 1)] = 255  # the class as the width of a bright band (survives any rescaling)
            Image.fromarray(pixels).save(tmp_path / split / "images" / f"{label.stem}.png")
            (tmp_path / split / "images" / f"{label.stem}.jpg").unlink()

    class Fake:
        def predict(self, arrays, batch_size=16):
            idx = [round(float(np.mean(np.asarray(a) > 0.5 * np.max(a))) * 32 / 6) - 1 for a in arrays]
            return [SimpleNamespace(findings=np.eye(4)[i] * 20) for i in idx]

    model = _model("meningioma", 0.0, 8.0)  # modality always MR, domain always inside
    # type head: the one-hot feature picks the class (KINDS order = the set's class order)
    model.heads[TUMOUR_TYPE].coef = np.eye(4)
    fake = Fake()
    fake.findings_model = model
    report = evaluate_tumour_type(fake, tmp_path, split="valid")
    assert report["n_images"] == 60 and report["head"]["accuracy"] == 1.0
    assert report["head"]["recall"] == {k: 1.0 for k in KINDS}
    assert report["domain"]["inside_share"] == 1.0
    said = report["as_said"]
    assert said["n_tumour_images"] == 45 and said["named_share"] == 1.0 and said["named_accuracy"] == 1.0
    assert said["named_on_tumour_free"] == 0
    with pytest.raises(Exception, match="no tumour-type heads"):
        fake.findings_model = None
        evaluate_tumour_type(fake, tmp_path)


def test_image_diagnosis_feature_marks_the_candidates_of_the_named_type() -> None:
    from agent.evidence import names_tumour_type, tumour_types
    from agent.features import FEATURES, build_candidates

    assert names_tumour_type("Glioblastoma multiforme", "glioma") and names_tumour_type(
        "Chordoid Glioma", "glioma"
    )
    assert names_tumour_type("Acromegaly from pituitary macroadenoma", "pituitary adenoma")
    assert not names_tumour_type("Meningioma", "glioma") and not names_tumour_type(
        "Colloid cyst", "pituitary adenoma"
    )
    entry = {
        "id": "M1",
        "accepted": True,
        "findings": {
            "terms": [
                {
                    "value": "meningioma",
                    "group": TUMOUR_GROUP,
                    "stated": True,
                    "cue": True,
                    "confidence": 0.97,
                },
                {"value": "glioma", "group": TUMOUR_GROUP, "stated": False, "cue": False, "confidence": 0.02},
                {"value": "mass", "group": "appearance", "stated": False, "cue": True, "confidence": 0.4},
            ]
        },
    }
    types = tumour_types([entry, {**entry, "accepted": False}])
    assert types == {"meningioma": 0.97}  # neither a term below the cue threshold nor a rejected image counts
    evidence = [
        {
            "id": "E1",
            "via": "text",
            "kind": "case_report",
            "diagnosis": "Meningioma, WHO grade 1",
            "text": "x",
            "score": 1.0,
            "rank": 1,
            "acr_code": "1.3",
        },
        {
            "id": "E2",
            "via": "text",
            "kind": "case_report",
            "diagnosis": "Glioblastoma",
            "text": "y",
            "score": 0.9,
            "rank": 2,
            "acr_code": "1.3",
        },
    ]
    by_label = {c.label: c.features for c in build_candidates(evidence, tumour_types=types)}
    assert by_label["Meningioma, WHO grade 1"]["image_diagnosis"] == pytest.approx(0.97)
    assert by_label["Glioblastoma"]["image_diagnosis"] == 0.0
    assert "image_diagnosis" in FEATURES
    assert all(f["image_diagnosis"] == 0.0 for f in (c.features for c in build_candidates(evidence)))


def test_tumour_fit_cases_are_image_only_balanced_and_train_only(tmp_path: Path) -> None:
    from agent.fit import load_tumour_cases
    from zebra.errors import ConfigError

    _write_yolo(tmp_path, 15, np.random.default_rng(3))
    cases = load_tumour_cases(tmp_path, per_class=10)
    assert len(cases) == 40 and {c.gold for c in cases} == set(KINDS)
    assert all(c.history == "" and not c.captions and len(c.images) == 1 for c in cases)
    assert load_tumour_cases(tmp_path, per_class=10) == cases  # seeded
    (tmp_path / "train").rename(tmp_path / "other")
    with pytest.raises(ConfigError):
        load_tumour_cases(tmp_path)


def test_image_diagnosis_weight_is_fitted_on_the_tumour_rows_alone() -> None:
    from agent.features import FEATURES
    from agent.fit import IMAGE_DIAGNOSIS, _zero_column, fit_from_rows, fit_image_diagnosis

    rng = np.random.default_rng(4)
    d, j = len(FEATURES), FEATURES.index(IMAGE_DIAGNOSIS)

    def row(i: int, typed: bool) -> dict:
        x = rng.normal(size=(5, d))
        x[:, j] = 0.0
        right = int(rng.integers(5))
        x[right, 0] += 0.5  # the first feature points at the right candidate, weakly
        if typed:  # the image names the right one's type
            x[right, j] = 0.95
        return {
            "case_id": f"{'t' if typed else 'm'}{i}",
            "x": x.tolist(),
            "correct": [k == right for k in range(5)],
        }

    medpix = [row(i, False) for i in range(60)]
    fitted = fit_from_rows(_zero_column(medpix, j))
    before = json.loads(json.dumps(fitted))
    fit_image_diagnosis(fitted, [row(i, True) for i in range(40)])
    report = fitted["cv"][IMAGE_DIAGNOSIS]
    assert report["weight"] > 1.0 and report["oof"]["top1"] > report["without"]["top1"]
    assert report["oof"]["nll"] < report["without"]["nll"]
    w, w0 = fitted["model"]["weights"], before["model"]["weights"]
    assert [v for k, v in enumerate(w) if k != j] == [v for k, v in enumerate(w0) if k != j]  # held fixed
    assert fitted["risk_control"] == before["risk_control"] and fitted["model"]["std"][j] == 1.0
