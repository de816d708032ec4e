"""Typed results of medical-image intake.

Everything here is plain Python values and NumPy arrays built after de-identification: no pydicom,
nibabel or Pillow object (and so no original header) is reachable from a :class:`Study`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SourceKind = Literal["dicom", "nifti", "raster"]


@dataclass
class DeidReport:
    """What de-identification did, without any of the values it removed.

    Attributes:
        profile: Name of the confidentiality profile applied.
        removed: Keywords (or ``(gggg,eeee)`` tags) of attributes deleted (action X).
        emptied: Keywords of attributes replaced by a zero-length value (action Z).
        replaced: Keywords of attributes replaced by a dummy value or a pseudonymous UID (actions D, U).
        private_tags_removed: Number of private attributes deleted (all levels of nesting).
        burned_in_annotation: ``True`` when an instance declared Burned In Annotation = YES: its pixels
            may show identifying text that header de-identification cannot remove.
        method: How pseudonyms are derived; the same for every salt (the salt itself is never shown).
        datasets: Number of DICOM data sets de-identified.
    """

    profile: str
    removed: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    private_tags_removed: int = 0
    burned_in_annotation: bool = False
    method: str = ""
    datasets: int = 0

    def merge(self, other: DeidReport) -> None:
        """Adds another data set's report to this one (keyword lists stay sorted and unique)."""
        self.removed = sorted(set(self.removed) | set(other.removed))
        self.emptied = sorted(set(self.emptied) | set(other.emptied))
        self.replaced = sorted(set(self.replaced) | set(other.replaced))
        self.private_tags_removed += other.private_tags_removed
        self.burned_in_annotation = self.burned_in_annotation or other.burned_in_annotation
        self.datasets += other.datasets

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "profile": self.profile,
            "removed": list(self.removed),
            "emptied": list(self.emptied),
            "replaced": list(self.replaced),
            "private_tags_removed": self.private_tags_removed,
            "burned_in_annotation": self.burned_in_annotation,
            "method": self.method,
            "datasets": self.datasets,
        }


@dataclass
class MedicalImage:
    """One 2-D image (a DICOM frame, a NIfTI axial slice or a PNG/JPEG picture).

    Attributes:
        pixels: ``float32`` (rows, columns) array in modality units (after rescale slope/intercept or a
            modality LUT); for colour sources the luminance of the colour values.
        display: ``uint8`` (rows, columns) array after the VOI LUT / window (or a robust percentile window
            when the source has none); MONOCHROME1 is inverted so that higher is always brighter.
        rgb: ``uint8`` (rows, columns, 3) array when the source is colour, else ``None``.
        frame_index: Frame number inside its source file (0 for single-frame files).
        slice_index: Position of the image in its series after sorting.
        pixel_spacing: (row spacing, column spacing) in mm, when known.
        window: (center, width) applied to make ``display``, or ``None`` when no window was applied
            (8-bit pictures, colour images).
        meta: Safe, de-identified attributes (modality, rows, columns, photometric interpretation, bits,
            transfer syntax, orientation, slice position ...); a fixed allow-list, never free text.
        source_name: Base name of the source file (never a full path).
    """

    pixels: np.ndarray
    display: np.ndarray
    rgb: np.ndarray | None = None
    frame_index: int = 0
    slice_index: int = 0
    pixel_spacing: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source_name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (shapes, dtypes, window, value range), without pixel values."""
        finite = self.pixels[np.isfinite(self.pixels)]
        return {
            "source_name": self.source_name,
            "frame_index": self.frame_index,
            "slice_index": self.slice_index,
            "shape": list(self.shape),
            "pixels_dtype": str(self.pixels.dtype),
            "display_dtype": str(self.display.dtype),
            "rgb": None if self.rgb is None else list(self.rgb.shape),
            "pixel_range": [float(finite.min()), float(finite.max())] if finite.size else None,
            "window": None if self.window is None else [float(v) for v in self.window],
            "pixel_spacing": None if self.pixel_spacing is None else [float(v) for v in self.pixel_spacing],
            "meta": dict(self.meta),
        }


@dataclass
class Series:
    """Images sharing one (pseudonymised) SeriesInstanceUID, sorted by position.

    Attributes:
        series_uid: Pseudonymous UID (``2.25.<int>``).
        modality: DICOM modality code (``CT``, ``MR`` ...), ``""`` when unknown.
        description: Series description; empty for DICOM under the basic profile (it removes it).
        images: The images, sorted by InstanceNumber / ImagePositionPatient.
    """

    series_uid: str
    modality: str = ""
    description: str = ""
    images: list[MedicalImage] = field(default_factory=list)


@dataclass
class Study:
    """Everything read from one input (file, folder, zip), de-identified.

    Attributes:
        study_uid: Pseudonymous study UID (``2.25.<int>``).
        patient_pseudo_id: HMAC-derived pseudonym of the patient ID, or ``None`` (non-DICOM inputs).
        modality: Modality of the first series.
        body_part: Body Part Examined when given, else ``""``.
        description: Study description; empty for DICOM under the basic profile.
        source_kind: ``"dicom"``, ``"nifti"`` or ``"raster"``.
        series: Series in the study.
        deid: What de-identification did (DICOM only).
        warnings: Things a user should know (skipped files, assumptions); never contains identifiers.
    """

    study_uid: str
    patient_pseudo_id: str | None
    modality: str
    body_part: str
    description: str
    source_kind: SourceKind
    series: list[Series] = field(default_factory=list)
    deid: DeidReport | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def images(self) -> list[MedicalImage]:
        """All images of all series, in series order."""
        return [image for series in self.series for image in series.images]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description of the study (no pixel values)."""
        return {
            "source_kind": self.source_kind,
            "study_uid": self.study_uid,
            "patient_pseudo_id": self.patient_pseudo_id,
            "modality": self.modality,
            "body_part": self.body_part,
            "description": self.description,
            "series": [
                {
                    "series_uid": s.series_uid,
                    "modality": s.modality,
                    "description": s.description,
                    "images": [image.summary() for image in s.images],
                }
                for s in self.series
            ],
            "deid": None if self.deid is None else self.deid.to_dict(),
            "warnings": list(self.warnings),
        }
