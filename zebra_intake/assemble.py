"""Grouping de-identified DICOM instances into a :class:`Study` of sorted :class:`Series`."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from zebra_intake.deid import METHOD, PROFILE_NAME, contains_identifier
from zebra_intake.dicom_image import FrameGeometry
from zebra_intake.types import DeidReport, MedicalImage, Series, Study

#: At most this many warnings are kept on a study (the rest are counted).
MAX_WARNINGS = 50


@dataclass
class Instance:
    """One de-identified DICOM file: its decoded frames and the (pseudonymised) keys to group it by."""

    name: str
    study_uid: str
    series_uid: str
    modality: str
    body_part: str
    series_description: str
    study_description: str
    series_number: int | None
    instance_number: int | None
    patient_pseudo_id: str | None
    deid: DeidReport
    frames: list[tuple[MedicalImage, FrameGeometry]] = field(default_factory=list)

    def sort_key(self) -> tuple[float, float, str]:
        """InstanceNumber first, then position along the slice normal, then the file name."""
        number = float(self.instance_number) if self.instance_number is not None else math.inf
        projection = self.frames[0][1].projection() if self.frames else None
        return (number, projection if projection is not None else 0.0, self.name)


def _series_key(instances: list[Instance]) -> tuple[float, str]:
    numbers = [i.series_number for i in instances if i.series_number is not None]
    return (float(min(numbers)) if numbers else math.inf, instances[0].series_uid)


def assemble(instances: list[Instance], warnings: list[str], identifiers: list[str]) -> Study:
    """Builds the study holding the most images; other studies in the input are reported and dropped.

    Args:
        instances: De-identified instances (at least one).
        warnings: Warnings gathered so far (checked for identifiers and capped here).
        identifiers: Original identifiers seen in the input, used for a last residual check.
    """
    by_study: dict[str, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_study[inst.study_uid].append(inst)
    chosen_uid = max(by_study, key=lambda uid: (sum(len(i.frames) for i in by_study[uid]), uid))
    chosen = by_study[chosen_uid]
    if len(by_study) > 1:
        dropped = sum(len(v) for k, v in by_study.items() if k != chosen_uid)
        warnings.append(
            f"The input holds {len(by_study)} studies; kept the largest, ignored {dropped} file(s) of the "
            "others (load one study at a time)."
        )
    patients = {i.patient_pseudo_id for i in chosen if i.patient_pseudo_id}
    if len(patients) > 1:
        warnings.append("The files of this study name different patients; the first pseudonym is used.")

    by_series: dict[str, list[Instance]] = defaultdict(list)
    for inst in chosen:
        by_series[inst.series_uid].append(inst)
    series_list: list[Series] = []
    for members in sorted(by_series.values(), key=_series_key):
        members.sort(key=Instance.sort_key)
        images: list[MedicalImage] = []
        for inst in members:
            for image, _geometry in inst.frames:
                image.slice_index = len(images)
                images.append(image)
        series_list.append(
            Series(
                series_uid=members[0].series_uid,
                modality=members[0].modality,
                description=members[0].series_description,
                images=images,
            )
        )

    report = DeidReport(profile=PROFILE_NAME, method=METHOD)
    for inst in chosen:
        report.merge(inst.deid)
    if report.burned_in_annotation:
        warnings.append(
            "Some images declare burned-in annotation: their pixels may show identifying text that header "
            "de-identification cannot remove."
        )
    first = chosen[0]
    study = Study(
        study_uid=chosen_uid,
        patient_pseudo_id=next((i.patient_pseudo_id for i in chosen if i.patient_pseudo_id), None),
        modality=series_list[0].modality if series_list else "",
        body_part=next((i.body_part for i in chosen if i.body_part), ""),
        description=first.study_description,
        source_kind="dicom",
        series=series_list,
        deid=report,
        warnings=clean_warnings(warnings, identifiers),
    )
    return study


def clean_warnings(warnings: list[str], identifiers: list[str]) -> list[str]:
    """De-duplicates, caps and drops any warning that would quote an identifier."""
    out: list[str] = []
    hidden = 0
    for text in warnings:
        if contains_identifier(text, identifiers):
            hidden += 1
            continue
        if text not in out:
            out.append(text)
    extra = len(out) - MAX_WARNINGS
    if extra > 0:
        out = [*out[:MAX_WARNINGS], f"... and {extra} more warnings."]
    if hidden:
        out.append(f"{hidden} warning(s) withheld because they would quote patient identifiers.")
    return out
