"""Hardened medical-image intake: DICOM, NIfTI, PNG/JPEG, with DICOM de-identification.

Use :func:`load_study`; everything it returns is de-identified and detached from the source files.
"""

from __future__ import annotations

from zebra_intake.loader import load_study
from zebra_intake.types import DeidReport, MedicalImage, Series, Study

__all__ = ["DeidReport", "MedicalImage", "Series", "Study", "load_study"]
