"""A triage result as DICOM: a Comprehensive SR (TID 1500 measurement report) and the heatmap as a
Parametric Map, or, where a map cannot be built for the source image, a Secondary Capture labelled derived.

Both go into the *original* study, next to the analysed image, and reference it by its original Study,
Series and SOP Instance UIDs (the raw instances fetched for the run, never the de-identified copy). Their
Series and SOP Instance UIDs are derived from the run name and the original StudyInstanceUID
(:func:`result_uid`), so a resumed or repeated run of the same name writes the same objects again, and a
server that overwrites instances (Orthanc with ``OverwriteInstances``; most PACS) keeps one of each.

SR content (TID 1500): the device observer (Zebra, the analyser), one planar ROI group per finding box, a
closed POLYLINE SCOORD on the analysed image with its score, an image-level group with the study's anomaly
score and a reference to the parametric map, and a "Qualitative Evaluations" container with the
differential (diagnoses, probabilities, cited evidence ids), the abstention and its reason, the change
statement, model and knowledge-base versions, and a research-use-only statement.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

#: Stated in every object Zebra writes.
RUO_STATEMENT = "Research use only, not for clinical decisions."
#: Private coding scheme of the concepts DICOM has no code for (declared in each SR).
ZEBRA_SCHEME = "99ZEBRA"
MANUFACTURER = "Zebra"
MODEL_NAME = "Zebra triage"
#: SOP classes of what Zebra writes: Comprehensive SR, Parametric Map, Secondary Capture.
RESULT_SOP_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.7"}
)
SR_SERIES_NUMBER = 9901
MAP_SERIES_NUMBER = 9902


def result_uid(run_name: str, study_uid: str, kind: str) -> str:
    """A UID (``2.25.<int>``) derived from run, original study and object kind; the same inputs always give
    the same UID, and nobody can recover the study UID from it."""
    digest = hashlib.sha256(f"zebra-result\x00{run_name}\x00{study_uid}\x00{kind}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _codes() -> dict[str, Any]:
    from highdicom.sr import CodedConcept

    return {
        "anomaly": CodedConcept("ANOMALY", ZEBRA_SCHEME, "Anomaly score"),
        "differential": CodedConcept("DIFFERENTIAL", ZEBRA_SCHEME, "Differential diagnosis"),
        "abstention": CodedConcept("ABSTENTION", ZEBRA_SCHEME, "Abstention"),
        "change": CodedConcept("CHANGE", ZEBRA_SCHEME, "Change against prior"),
        "versions": CodedConcept("VERSIONS", ZEBRA_SCHEME, "Model and knowledge base versions"),
        "finding": CodedConcept("121071", "DCM", "Finding"),
        "comment": CodedConcept("121106", "DCM", "Comment"),
        "no_units": CodedConcept("1", "UCUM", "no units"),
        "procedure": CodedConcept("363679005", "SCT", "Imaging procedure"),
        "lesion": CodedConcept("52988006", "SCT", "Lesion"),
        "qualitative": CodedConcept("126010", "DCM", "Qualitative Evaluations"),
        "heatmap": CodedConcept("HEATMAP", ZEBRA_SCHEME, "Anomaly heatmap"),
    }


def _text(value: Any, limit: int = 1024) -> str:
    """Plain text for a TEXT content item (UT is long, but a report line should not be)."""
    return " ".join(str(value).split())[:limit] or "-"


def _frames(image_ds: Dataset, frame_index: int) -> list[int] | None:
    return [int(frame_index) + 1] if int(getattr(image_ds, "NumberOfFrames", 1) or 1) > 1 else None


def build_parametric_map(
    image_ds: Dataset, heatmap: np.ndarray, *, frame_index: int, run_name: str, study_uid: str, analyser: str
) -> Dataset:
    """The heatmap over the analysed image as a float Parametric Map (values 0-1, no units).

    Raises:
        ValueError, TypeError: When highdicom cannot build a map for this source image (the caller falls
            back to :func:`build_secondary_capture`).
    """
    import highdicom as hd

    if int(getattr(image_ds, "NumberOfFrames", 1) or 1) > 1:
        raise ValueError("multi-frame source: the map would need a frame of its own geometry")
    heat = _resize(np.asarray(heatmap, dtype=np.float32), int(image_ds.Rows), int(image_ds.Columns))
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="ANOMALY",
        lut_explanation="Zebra anomaly heatmap",
        unit=_codes()["no_units"],
        value_range=(0.0, 1.0),
        slope=1.0,
        intercept=0.0,
    )
    pm = hd.pm.ParametricMap(
        source_images=[image_ds],
        pixel_array=np.clip(heat, 0.0, 1.0)[np.newaxis],
        series_instance_uid=result_uid(run_name, study_uid, "map-series"),
        series_number=MAP_SERIES_NUMBER,
        sop_instance_uid=result_uid(run_name, study_uid, "map"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=_text(analyser, 64),
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="ANOMALY",
        content_description="Anomaly heatmap (derived; research use only)",
    )
    pm.SeriesDescription = "Zebra anomaly map - research use only"
    # Type 2C in General Series: present (empty when unknown) so validators need not guess the condition.
    pm.Laterality = image_ds.get("Laterality", "") or ""
    return pm


def build_secondary_capture(
    image_ds: Dataset,
    *,
    display: np.ndarray | None,
    heatmap: np.ndarray | None,
    overlay_png: bytes | None,
    run_name: str,
    study_uid: str,
) -> Dataset:
    """The heatmap blended over the analysed image as an RGB Secondary Capture labelled DERIVED.

    Raises:
        ValueError: When there is neither a heatmap nor an overlay picture.
    """
    import highdicom as hd
    from PIL import Image

    rows, cols = int(image_ds.Rows), int(image_ds.Columns)
    if overlay_png is not None:
        with Image.open(io.BytesIO(overlay_png)) as im:
            rgb = np.asarray(im.convert("RGB").resize((cols, rows)), dtype=np.uint8)
    elif heatmap is not None and display is not None:
        gray = display if display.ndim == 2 else display.mean(axis=2)
        base = _resize(gray.astype(np.float32), rows, cols)
        heat = np.clip(_resize(np.asarray(heatmap, dtype=np.float32), rows, cols), 0.0, 1.0)
        rgb = np.stack([base, base, base], axis=-1)
        rgb[..., 0] = (1 - 0.5 * heat) * base + 0.5 * heat * 255
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    else:
        raise ValueError("no heatmap to write")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=image_ds,
        pixel_array=np.ascontiguousarray(rgb),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=_patient_orientation(image_ds),
        series_instance_uid=result_uid(run_name, study_uid, "map-series"),
        series_number=MAP_SERIES_NUMBER,
        sop_instance_uid=result_uid(run_name, study_uid, "map"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.SeriesDescription = "Zebra heatmap overlay (DERIVED) - research use only"
    sc.DerivationDescription = "Anomaly heatmap blended over the source image by Zebra; " + RUO_STATEMENT
    sc.BurnedInAnnotation = "NO"
    sc.Laterality = image_ds.get("Laterality", "") or ""
    return sc


def _patient_orientation(image_ds: Dataset) -> tuple[str, str]:
    """Patient Orientation (row, column directions) from Image Orientation (Patient): the dominant axis."""
    iop = [float(v) for v in image_ds.get("ImageOrientationPatient", [])]
    if len(iop) != 6:
        return ("L", "P")
    letters = (("L", "R"), ("P", "A"), ("H", "F"))

    def letter(v: list[float]) -> str:
        axis = int(np.argmax(np.abs(v)))
        return letters[axis][0] if v[axis] >= 0 else letters[axis][1]

    return (letter(iop[:3]), letter(iop[3:]))


def _resize(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    if array.shape[:2] == (rows, cols):
        return array
    from PIL import Image

    return np.asarray(Image.fromarray(array.astype(np.float32)).resize((cols, rows), Image.BILINEAR))


def build_sr(
    result: dict[str, Any],
    image_ds: Dataset,
    *,
    frame_index: int,
    run_name: str,
    study_uid: str,
    map_ds: Dataset | None = None,
    knowledge_base: str | None = None,
) -> Dataset:
    """The Comprehensive SR of one triage result (module docstring).

    Args:
        result: The stored triage result (:func:`triage.worker.build_result`).
        image_ds: The original analysed image (its boxes' coordinates are its pixels).
        frame_index: The analysed frame (0-based) when ``image_ds`` is multi-frame.
        run_name: The triage run (UIDs). study_uid: The original StudyInstanceUID (UIDs).
        map_ds: The parametric map or secondary capture written with it, referenced from the report.
        knowledge_base: Name and version of the knowledge base the analyser used.
    """
    import highdicom as hd
    from highdicom.sr import (
        AlgorithmIdentification,
        ImageRegion,
        Measurement,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        ObserverContext,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForRegion,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    c = _codes()
    analyser = _text(result.get("analyser") or "unknown", 64)
    algorithm = AlgorithmIdentification(name=MODEL_NAME, version=analyser)
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=result_uid("zebra", "device", analyser),
            name=MODEL_NAME,
            manufacturer_name=MANUFACTURER,
            model_name=analyser,
        ),
    )
    rows, cols = int(image_ds.Rows), int(image_ds.Columns)
    frames = _frames(image_ds, frame_index)
    findings = result.get("findings") or {}
    groups: list[Any] = []
    for i, box in enumerate(findings.get("boxes") or []):
        x1, x2 = sorted((float(box.get("x1", 0)), float(box.get("x2", 0))))
        y1, y2 = sorted((float(box.get("y1", 0)), float(box.get("y2", 0))))
        x1, x2 = float(np.clip(x1, 0, cols)), float(np.clip(x2, 0, cols))
        y1, y2 = float(np.clip(y1, 0, rows)), float(np.clip(y2, 0, rows))
        if x2 <= x1 or y2 <= y1:
            continue
        region = ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=np.float32),
            source_image=SourceImageForRegion.from_source_image(image_ds, referenced_frame_numbers=frames),
        )
        label = _text(box.get("label") or "finding", 50)
        measurements = []
        if box.get("score") is not None:
            measurements.append(Measurement(name=c["anomaly"], value=float(box["score"]), unit=c["no_units"]))
        groups.append(
            PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=result_uid(run_name, study_uid, f"finding-{i}"),
                    identifier=f"Finding {i + 1}: {label}",
                ),
                referenced_region=region,
                finding_type=c["lesion"],
                algorithm_id=algorithm,
                measurements=measurements or None,
            )
        )
    anomaly = findings.get("anomaly_score")
    groups.append(
        MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(
                uid=result_uid(run_name, study_uid, "study-level"), identifier="Study-level triage"
            ),
            algorithm_id=algorithm,
            measurements=[Measurement(name=c["anomaly"], value=float(anomaly), unit=c["no_units"])]
            if anomaly is not None
            else None,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image_ds, frames)],
        )
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=c["procedure"],
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    report[0].ContentSequence.append(_qualitative(result, c, analyser, knowledge_base, map_ds))
    evidence = [image_ds] + ([map_ds] if map_ds is not None else [])
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=result_uid(run_name, study_uid, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=result_uid(run_name, study_uid, "sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.SeriesDescription = "Zebra triage report - research use only"
    scheme = Dataset()
    scheme.CodingSchemeDesignator = ZEBRA_SCHEME
    scheme.CodingSchemeName = "Zebra triage concepts"
    scheme.CodingSchemeResponsibleOrganization = "Zebra project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def _qualitative(
    result: dict[str, Any],
    c: dict[str, Any],
    analyser: str,
    knowledge_base: str | None,
    map_ds: Dataset | None,
) -> Any:
    from highdicom.sr import ContainerContentItem, ImageContentItem, TextContentItem

    contains = "CONTAINS"
    container = ContainerContentItem(name=c["qualitative"], relationship_type=contains)
    items = []
    evidence = {str(e.get("id")): e for e in result.get("evidence") or []}

    def cite(cid: Any) -> str:
        e = evidence.get(str(cid))
        if not e or not e.get("doc_id"):
            return str(cid)
        return f"{cid} (document {e['doc_id']}" + (f": {e['title']})" if e.get("title") else ")")

    for rank, d in enumerate(result.get("differential") or [], start=1):
        cited = "; ".join(cite(x) for x in d.get("citations") or []) or "none"
        prob = d.get("probability")
        prob_text = f"{float(prob):.3f}" if prob is not None else "n/a"
        items.append(
            TextContentItem(
                name=c["differential"],
                value=_text(
                    f"{rank}. {d.get('diagnosis', '')} (probability {prob_text}); evidence cited: {cited}"
                ),
                relationship_type=contains,
            )
        )
    if result.get("abstained"):
        reason = result.get("abstain_reason") or "no reason given"
        items.append(
            TextContentItem(
                name=c["abstention"], value=_text(f"Abstained: {reason}"), relationship_type=contains
            )
        )
    else:
        items.append(
            TextContentItem(name=c["abstention"], value="Not abstained.", relationship_type=contains)
        )
    change = result.get("change") or {}
    if change.get("statement") or change.get("label"):
        conf = change.get("confidence")
        text = change.get("statement") or change.get("label")
        if conf is not None:
            text = f"{text} (confidence {float(conf):.3f})"
        items.append(TextContentItem(name=c["change"], value=_text(text), relationship_type=contains))
    caption = (result.get("findings") or {}).get("caption")
    if caption:
        items.append(TextContentItem(name=c["finding"], value=_text(caption), relationship_type=contains))
    versions = f"Model: {analyser}; knowledge base: {knowledge_base or 'none'}"
    items.append(TextContentItem(name=c["versions"], value=_text(versions), relationship_type=contains))
    items.append(TextContentItem(name=c["comment"], value=RUO_STATEMENT, relationship_type=contains))
    if map_ds is not None:
        items.append(
            ImageContentItem(
                name=c["heatmap"],
                referenced_sop_class_uid=map_ds.SOPClassUID,
                referenced_sop_instance_uid=map_ds.SOPInstanceUID,
                relationship_type=contains,
            )
        )
    container.ContentSequence = items
    return container
