"""Reading a worklist item's study and prior through the hardened intake, and picking the images to analyse."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from triage.errors import WorklistError
from zebra_intake.picking import display_array, pick_images

__all__ = ["display_array", "load", "pick_images"]


def load(study_path: str) -> Any:  # -> zebra_intake.Study
    """Reads ``study_path`` with :func:`zebra_intake.load_study` (a file, a folder, or a JSON list of files),
    or fetches a ``dicomweb:<StudyInstanceUID>`` study with WADO-RS first (:func:`pacs.source.load_study`).

    A list of files (one DICOM study sharing its folder with other studies) is hard-linked, or copied when
    linking is not possible, into a private temporary folder that intake reads and that is deleted after.

    Raises:
        IntakeError, NotFoundError: From intake, for unreadable or missing inputs.
        WorklistError: For a malformed file list.
        DicomwebError, DicomwebStudyGoneError: When a DICOMweb study cannot be fetched.
    """
    from pacs.source import is_dicomweb
    from zebra_intake import load_study

    if is_dicomweb(study_path):
        from pacs.source import load_study as load_dicomweb

        return load_dicomweb(study_path)
    if not study_path.startswith("["):
        return load_study(study_path)
    try:
        files = [Path(f) for f in json.loads(study_path)]
    except (ValueError, TypeError) as exc:
        raise WorklistError("A study's file list is not valid JSON.", hint="Re-create the run.") from exc
    tmp = Path(tempfile.mkdtemp(prefix="zebra-triage-"))
    try:
        for i, file in enumerate(files):
            target = tmp / f"{i:06d}.dcm"
            try:
                os.link(file, target)
            except OSError:
                shutil.copyfile(file, target)
        return load_study(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
