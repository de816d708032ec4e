"""The committed checkpoint: loads, analyses real DICOM, gates non-medical images, exports to open_clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vlm.checkpoint import DEFAULT_NAME, ENCODER_NAME, PACKAGE_WEIGHTS_DIR, encoder_path

pytestmark = pytest.mark.slow

CKPT = PACKAGE_WEIGHTS_DIR / f"{DEFAULT_NAME}.safetensors"


@pytest.fixture(scope="module")
def backend():
    from vlm.backends.builtin import BuiltinVLM

    return BuiltinVLM(CKPT)


def test_committed_files_are_small_and_described() -> None:
    assert CKPT.stat().st_size < 20e6
    assert (encoder_path(PACKAGE_WEIGHTS_DIR)).stat().st_size < 50e6
    meta = json.loads(CKPT.with_suffix(".json").read_text())
    assert meta["format"] == "zebra-vlm/1" and meta["encoder"] == f"{ENCODER_NAME}.safetensors"
    assert len(meta["gate"]["mean"]) == 256 and meta["gate"]["threshold"] > 0
    assert "map50" in meta["metrics"]["tumour_valid"]
    card = (PACKAGE_WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    assert "not" in card.lower() and "clinical" in card.lower()


def test_registry_builds_the_default_once(zebra_env) -> None:
    from vlm.registry import clear_cache, create_vlm

    clear_cache()
    first = create_vlm("builtin")
    assert create_vlm("builtin") is first and first.name.startswith(f"builtin:{DEFAULT_NAME}@")
    clear_cache()


def test_analyses_a_pydicom_mr_image(backend, tmp_path) -> None:
    from pydicom.data import get_testdata_file

    from zebra_intake import load_study

    study = load_study(get_testdata_file("MR_small.dcm"))
    image = study.images[0]
    result = backend.analyze_image(image)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["model"] == backend.name
    if result.gate.accepted:
        assert result.heatmap.shape == image.shape and 0 <= result.anomaly_score <= 1
        assert result.embedding.shape == (256,) and abs(float(np.linalg.norm(result.embedding)) - 1) < 1e-4
        assert result.caption
        assert result.overlay_png(image.display, tmp_path / "o.png").is_file()
    else:  # a 64 x 64 phantom-like slice may be out of domain; then nothing is described
        # It has no dark pixels at all (min 52/255), so the photo-like rule may be the one that rejects it.
        assert result.caption is None and result.boxes == []
        assert result.gate.kind in ("out_of_domain", "noise", "natural_photo")


def test_gate_rejects_non_medical_and_accepts_a_brain_slice(backend, brain_slice) -> None:
    pytest.importorskip("skimage.data")
    from vlm.eval.gate_eval import non_medical_inputs

    inputs = non_medical_inputs(repeats=1)
    cases = {n: im for n, (cat, im) in inputs.items() if cat in ("noise", "blank", "photo")}
    assert sum(n.startswith("photo_") for n in cases) >= 15 and "photo_camera" in cases
    for name, image in cases.items():
        result = backend.analyze_image(image)
        assert not result.gate.accepted, (name, result.gate)
        assert result.caption is None and result.boxes == [] and result.heatmap is None, name
    assert backend.analyze_image(brain_slice).gate.accepted


def test_photo_gate_rejects_most_grayscale_conversions_of_colour_photos(backend) -> None:
    pytest.importorskip("skimage.data")
    from vlm.eval.gate_eval import non_medical_inputs

    assert backend.gate.photo is not None and 0 < backend.gate.photo.threshold < 1
    inputs = non_medical_inputs(repeats=0)
    gray = {n: im for n, (cat, im) in inputs.items() if cat == "photo_gray"}
    assert len(gray) == 10
    verdicts = {n: backend.analyze_image(im).gate for n, im in gray.items()}
    rejected = [n for n, g in verdicts.items() if not g.accepted]
    # Measured with the learnt photo gate: 7 of 10 (5 of 10 without it); never described when rejected.
    assert len(rejected) >= 7, sorted(set(gray) - set(rejected))
    assert all(verdicts[n].kind in ("natural_photo", "out_of_domain") for n in rejected)


@pytest.mark.xfail(
    strict=True,
    reason="known gap (issue 4): 3 of 10 colour photos converted to grayscale still pass the gate",
)
def test_gate_rejects_grayscale_conversions_of_colour_photos(backend) -> None:
    pytest.importorskip("skimage.data")
    from vlm.eval.gate_eval import non_medical_inputs

    # Measured with the photo gate: astronaut, coffee and rocket in grayscale pass (7 of 10 rejected).
    inputs = non_medical_inputs(repeats=0, photos=("astronaut", "coffee", "rocket"))
    gray = {n: im for n, (cat, im) in inputs.items() if cat == "photo_gray"}
    assert len(gray) == 3
    accepted = [n for n, im in gray.items() if backend.analyze_image(im).gate.accepted]
    assert not accepted, accepted


def test_encoder_export_loads_in_open_clip(backend, brain_slice) -> None:
    import open_clip
    import torch

    from vlm.export import verify_open_clip_export
    from vlm.model.config import register_arch
    from vlm.preprocess import to_model_input

    encoder = encoder_path(PACKAGE_WEIGHTS_DIR)
    assert verify_open_clip_export(CKPT, encoder) < 1e-4
    # Exactly as the retrieval index loads it (open_clip returns a train-mode model: eval() is required).
    model, _, _ = open_clip.create_model_and_transforms(
        register_arch(backend.config), pretrained=str(encoder)
    )
    model.eval()
    with torch.no_grad():
        emb = model.encode_image(to_model_input(brain_slice, 256)[None], normalize=True)[0].numpy()
    assert emb.shape == (256,)
    assert abs(float(emb @ backend.analyze_image(brain_slice).embedding) - 1) < 1e-4


def _tumour_images(tumor_root, per_class: int) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """A fixed sample of validation images labelled with one tumour class: (path, RGB image, gold boxes)."""
    import yaml
    from PIL import Image

    from zebra_datasets.convert.base import ConvertReport
    from zebra_datasets.convert.yolo import parse_label_file

    names = yaml.safe_load((tumor_root / "data.yaml").read_text())["names"]
    tumour_ids = {i for i, n in enumerate(names) if n.lower().replace(" ", "_") not in ("no_tumor", "normal")}
    by_class: dict[int, list[Path]] = {i: [] for i in tumour_ids}
    for label in sorted((tumor_root / "valid" / "labels").glob("*.txt")):
        classes = {int(float(line.split()[0])) for line in label.read_text().splitlines() if line.strip()}
        image = tumor_root / "valid" / "images" / f"{label.stem}.jpg"
        if len(classes) == 1 and classes <= tumour_ids and image.is_file():
            by_class[classes.pop()].append(image)
    report = ConvertReport("yolo", str(tumor_root), "-")
    sample = []
    for paths in by_class.values():
        for i in np.linspace(0, len(paths) - 1, per_class).round().astype(int):
            with Image.open(paths[i]) as img:
                rgb = np.asarray(img.convert("RGB"))
            label = paths[i].parent.parent / "labels" / f"{paths[i].stem}.txt"
            boxes = [b.xyxy() for _, b in parse_label_file(label, rgb.shape[1], rgb.shape[0], names, report)]
            sample.append((paths[i], rgb, np.array(boxes, np.float64).reshape(-1, 4)))
    return sample


@pytest.mark.shared_data
def test_accepts_and_finds_tumours_on_the_validation_split(backend, tumor_root) -> None:
    from vlm.eval.metrics import iou_matrix

    sample = _tumour_images(tumor_root, per_class=5)
    assert len(sample) == 15
    found = 0
    for path, rgb, gold in sample:
        result = backend.analyze_image(rgb)
        assert result.gate.accepted, (path.name, result.gate)
        pred = np.array([[b.x1, b.y1, b.x2, b.y2] for b in result.boxes]).reshape(-1, 4)
        # every box says where it lies, and the caption uses the top box's words
        sides = ("right", "left", "midline")
        assert all(b.position and b.position.split()[0] in sides for b in result.boxes)
        if result.boxes:
            assert f"Most likely region: {result.boxes[0].position}" in result.caption
        # Found: a reported box overlapping a gold box at IoU >= 0.3 (the mAP@0.3 criterion).
        found += bool(len(pred)) and bool((iou_matrix(pred, gold) >= 0.3).any())
    # Measured with the shipped settings: 70% of all 645 valid tumour images get such a box, 12 of these 15.
    # The model does miss tumours, so the bar is a share, not every image.
    assert found / len(sample) >= 0.6, found


def _pydicom_data_image(name: str):
    """The first image of a pydicom-data file, loaded as the app loads it (with its header)."""
    from pydicom.data import get_testdata_file

    from zebra_intake import load_study

    path = get_testdata_file(name)
    if path is None:
        pytest.skip("pydicom-data is not installed")
    return load_study(path).images[0]


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("MR-SIEMENS-DICOM-WithOverlays.dcm", "Body Part Examined: ABDOMEN"),  # abdominal MR
        ("explicit_VR-UN.dcm", "Body Part Examined: PANCREAS"),  # pancreas CT
        ("US1_UNCR.dcm", "ultrasound (US)"),
        ("RG1_UNCR.dcm", "computed radiography (CR)"),  # chest radiograph
        ("RG3_UNCR.dcm", "computed radiography (CR)"),  # extremity radiograph
        ("MR2_UNCR.dcm", "name the shoulder and not the head"),  # shoulder MR: its Study Description only
    ],
)
def test_gate_refuses_non_head_dicom_by_its_header(backend, name, found) -> None:
    result = backend.analyze_image(_pydicom_data_image(name))
    assert not result.gate.accepted and result.gate.kind == "out_of_domain", (name, result.gate)
    assert found in result.gate.reason and "head CT and MR only" in result.gate.reason, result.gate.reason
    assert result.caption is None and result.boxes == [] and result.heatmap is None


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "eCT_Supplemental.dcm"])
def test_gate_accepts_head_ct_dicom(backend, name) -> None:
    # a real head CT and a head CT perfusion map; neither gives Body Part Examined
    result = backend.analyze_image(_pydicom_data_image(name))
    assert result.gate.accepted, (name, result.gate)


@pytest.mark.xfail(
    strict=True,
    reason="known gap (issue 4): without its header (pixels only) a shoulder MR (pydicom-data MR2_UNCR) is "
    "taken for an in-domain head image; a head-outline check fitted on training images could not refuse it "
    "without refusing tightly cropped head images (docs/vlm.md, gate). With its header it is refused.",
)
def test_gate_rejects_non_head_anatomy_from_pixels_alone(backend) -> None:
    image = _pydicom_data_image("MR2_UNCR.dcm")
    result = backend.analyze_image(image.display)
    assert not result.gate.accepted and result.gate.kind == "out_of_domain"
