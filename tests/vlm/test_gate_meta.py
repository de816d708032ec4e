"""The gate's DICOM-header rule (vlm.gate_meta), on synthetic metadata."""

from __future__ import annotations

import numpy as np
import pytest

from vlm.gate import Gate
from vlm.gate_meta import check_metadata, is_head_part, metadata_of


@pytest.mark.parametrize(
    ("modality", "words"),
    [
        ("US", "ultrasound (US)"),
        ("CR", "computed radiography (CR)"),
        ("DX", "digital radiography (DX)"),
        ("NM", "nuclear medicine (NM)"),
        ("PT", "PET (PT)"),
        ("MG", "mammography (MG)"),
        ("XA", "X-ray angiography (XA)"),
        ("OT", "(OT)"),
        ("SEG", "segmentation (SEG)"),
        ("ZZ", "modality ZZ"),
    ],
)
def test_other_modalities_are_refused_by_name(modality, words) -> None:
    verdict = check_metadata({"modality": modality, "body_part": "HEAD"})
    assert verdict is not None and not verdict.accepted and verdict.kind == "out_of_domain"
    assert words in verdict.reason and "head CT and MR only" in verdict.reason


def test_reason_reads_well() -> None:
    verdict = check_metadata({"modality": "US", "body_part": ""})
    assert verdict.reason.startswith("The DICOM header says this is an ultrasound (US) image;")
    assert "is a PET (PT) image" in check_metadata({"modality": "PT"}).reason


@pytest.mark.parametrize("part", ["ABDOMEN", "CHEST", "PANCREAS", "SHOULDER", "EXTREMITY", "WHOLE BODY",
                                  "LSPINE", "NECK", "KNEE", "HUMERAL HEAD", "FEMORALHEAD", "HEAD OF FEMUR"])  # fmt: skip
def test_non_head_body_parts_of_ct_and_mr_are_refused(part) -> None:
    for modality in ("CT", "MR", ""):
        verdict = check_metadata({"modality": modality, "body_part": part})
        assert verdict is not None and verdict.kind == "out_of_domain", (modality, part)
        assert f"Body Part Examined: {part}" in verdict.reason and "not the head" in verdict.reason
    assert (
        "this MR image shows the abdomen" in check_metadata({"modality": "MR", "body_part": "ABDOMEN"}).reason
    )


@pytest.mark.parametrize("part", ["HEAD", "BRAIN", "SKULL", "Head", "HEADNECK", "HEAD_NECK", "HEAD AND NECK",
                                  "HEAD^ROUTINE", "BRAINSTEM", "CEREBRUM", "CIRCLEOFWILLIS", "IAC", "ORBIT",
                                  "SELLA", "PITUITARY", "TEMPORAL BONE", "SINUS", "FACE", "KOPF", "SCHAEDEL",
                                  "CRANE", "CABEZA", "CT HEAD W/O"])  # fmt: skip
def test_head_parts_are_allowed(part) -> None:
    assert is_head_part(part)
    assert check_metadata({"modality": "CT", "body_part": part}) is None
    assert check_metadata({"modality": "MR", "body_part": part}) is None


@pytest.mark.parametrize("part", ["", "  ", "UNKNOWN", "Other", "-", "N/A"])
def test_missing_or_placeholder_body_part_has_no_verdict(part) -> None:
    assert check_metadata({"modality": "MR", "body_part": part}) is None
    assert check_metadata({"modality": "CT", "body_part": part, "sop_class": "CT Image Storage"}) is None


def test_inputs_without_a_header_have_no_verdict(brain_slice) -> None:
    assert check_metadata(None) is None and check_metadata({}) is None
    assert check_metadata(brain_slice) is None and metadata_of(brain_slice) is None
    assert check_metadata({"modality": "", "body_part": "", "sop_class": ""}) is None  # PNG via zebra_intake


def test_sop_class_stands_in_for_an_empty_modality() -> None:
    verdict = check_metadata({"modality": "", "sop_class": "Ultrasound Multi-frame Image Storage"})
    assert verdict is not None and "ultrasound (US)" in verdict.reason
    assert check_metadata({"modality": "", "sop_class": "MR Image Storage"}) is None


def test_gate_reads_the_meta_of_a_medical_image(brain_slice) -> None:
    from zebra_intake.types import MedicalImage

    def image(**meta):
        return MedicalImage(pixels=brain_slice.astype(np.float32), display=brain_slice, meta=meta)

    gate = Gate()
    assert gate.check_metadata(image(modality="MR", body_part="HEAD")) is None
    assert gate.check_metadata(image(modality="MR", body_part="")) is None
    refused = gate.check_metadata(image(modality="CT", body_part="CHEST"))
    assert refused is not None and refused.kind == "out_of_domain" and "CHEST" in refused.reason
    assert gate.check_metadata(image(modality="US")).kind == "out_of_domain"


def test_backend_refuses_by_header_before_any_pixel_check(tiny_checkpoint, brain_slice) -> None:
    from vlm.backends.builtin import BuiltinVLM
    from zebra_intake.types import MedicalImage

    backend = BuiltinVLM(tiny_checkpoint)
    chest = MedicalImage(
        pixels=brain_slice.astype(np.float32),
        display=brain_slice,
        meta={"modality": "CT", "body_part": "CHEST"},
    )
    result = backend.analyze_image(chest)
    assert not result.gate.accepted and result.gate.kind == "out_of_domain" and "CHEST" in result.gate.reason
    assert result.caption is None and result.boxes == [] and result.heatmap is None
    head = MedicalImage(
        pixels=brain_slice.astype(np.float32),
        display=brain_slice,
        meta={"modality": "MR", "body_part": "BRAIN"},
    )
    # the same pixels with a head header reach the image checks (the tiny model has no OOD statistics)
    assert "DICOM" not in (backend.analyze_image(head).gate.reason or "")
    both = backend.analyze(head, prior=chest)
    assert both.prior is not None and both.prior.gate.kind == "out_of_domain"
    assert backend.analyze(chest, prior=head).current.gate.kind == "out_of_domain"


class _Image:
    """A header-bearing input: ``meta`` and ``pixel_spacing`` like ``zebra_intake.MedicalImage``."""

    def __init__(self, meta: dict, spacing: tuple[float, float] | None) -> None:
        self.meta = meta
        self.pixel_spacing = spacing


@pytest.mark.parametrize(
    ("spacing", "rows", "refused"),
    [
        ((0.86, 0.86), 512, True),  # 440 mm: an abdominal CT
        ((0.72, 0.72), 484, True),  # 348 mm: a body MR
        ((0.48, 0.48), 512, False),  # 245 mm: a head CT
        ((0.2, 0.2), 1024, False),  # 205 mm
        (None, 512, False),  # no spacing: no verdict
    ],
)
def test_a_field_of_view_wider_than_a_head_is_refused(spacing, rows, refused) -> None:
    image = _Image({"modality": "CT", "body_part": "", "rows": rows, "columns": rows}, spacing)
    verdict = check_metadata(image)
    assert (verdict is not None) == refused
    if refused:
        assert (
            verdict.kind == "out_of_domain" and "field of view" in verdict.reason and "mm" in verdict.reason
        )


def test_field_of_view_does_not_override_a_head_body_part() -> None:
    image = _Image({"modality": "CT", "body_part": "HEAD", "rows": 512, "columns": 512}, (0.7, 0.7))
    assert check_metadata(image) is None
    # a named non-head part keeps its own, more specific reason
    body = _Image({"modality": "MR", "body_part": "ABDOMEN", "rows": 512, "columns": 512}, (0.7, 0.7))
    assert "ABDOMEN" in check_metadata(body).reason


@pytest.mark.parametrize(
    ("region", "words"),
    [("SHOULDER", "the shoulder"), ("ABDOMEN", "the abdomen"), ("LOWER_LIMB", "leg or hip")],
)
def test_descriptions_naming_another_region_refuse_when_body_part_is_empty(region, words) -> None:
    verdict = check_metadata({"modality": "MR", "body_part": "", "described_region": region})
    assert verdict is not None and not verdict.accepted and verdict.kind == "out_of_domain"
    assert words in verdict.reason and "descriptions" in verdict.reason


@pytest.mark.parametrize(
    ("part", "region"), [("", "HEAD"), ("", ""), ("BRAIN", "SHOULDER"), ("HEAD", "SPINE")]
)
def test_descriptions_never_overrule_a_head_body_part_or_name_the_head(part, region) -> None:
    # Body Part Examined is the coded attribute: when it says head, free-text descriptions do not overrule it.
    assert check_metadata({"modality": "MR", "body_part": part, "described_region": region}) is None
