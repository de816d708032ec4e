"""Stores a DICOMweb study's triage results back to the server with STOW-RS (``[dicomweb] write_back``).

Called by the triage worker after the analysis of a ``dicomweb:`` study and before its result is committed,
in the same process that fetched the study: the original instances are still in memory
(:func:`pacs.source.fetched`), so the results reference the original UIDs without any mapping being stored.
A failed store fails the item like any transient error (retried, then recorded with the reason); the
result UIDs are deterministic, so a retry replaces what an earlier try stored.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pacs.errors import DicomwebError

log = logging.getLogger(__name__)
# highdicom narrates every module it copies at INFO: one line per attribute group per object.
logging.getLogger("highdicom").setLevel(logging.WARNING)


def _analysed_image(study: Any, image: np.ndarray | None) -> Any:
    """The study's ``MedicalImage`` whose display pixels are ``image`` (the one the analyser reports on);
    the middle image of the largest series when the analyser did not say."""
    from zebra_intake import picking as studies

    if image is not None:
        for series in sorted(study.series, key=lambda s: -len(s.images)):
            for candidate in series.images:
                shown = studies.display_array(candidate)
                if shown.shape == image.shape and np.array_equal(shown, image):
                    return candidate
    picked = studies.pick_images(study, 1)
    if not picked:
        raise DicomwebError(
            "The study holds no image to attach results to.", hint="Nothing was written back."
        )
    return picked[0]


def knowledge_base_version(bundle: str | None) -> str | None:
    """``<bundle folder name>`` plus its manifest's version or creation time (``None``: the settings'
    default bundle); ``None`` when the folder does not exist."""
    import json
    from pathlib import Path

    from zebra.config import get_settings

    path = Path(bundle) if bundle else get_settings().bundle_dir
    if not path.is_dir():
        return None
    text = path.name
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return text
    for key in ("version", "created_at", "created"):
        if manifest.get(key):
            return f"{text} ({key} {manifest[key]})"
    return text


def write_results(
    item: Any,
    analysis: Any,
    result: dict[str, Any],
    *,
    run_name: str,
    bundle: str | None = None,
    client: Any | None = None,
) -> dict[str, Any]:
    """Builds the SR and the map of one analysed study and stores them (module docstring).

    Returns:
        What was written: ``{"sr": SOP Instance UID, "map": SOP Instance UID or None, "map_kind":
        "parametric-map" | "secondary-capture" | None}`` (result UIDs only, never the study's own).

    Raises:
        DicomwebError: When the study is not in memory or the server does not store the objects.
    """
    from pacs import results, source

    fetched = source.fetched(item.study_path)
    if fetched is None:
        raise DicomwebError(
            "The study's fetched instances are gone before the write-back.", hint="Run again with --resume."
        )
    image = _analysed_image(fetched.study, getattr(analysis, "image", None))
    image_ds = fetched.original_dataset(image)
    frame = int(getattr(image, "frame_index", 0) or 0)
    study_uid = fetched.study_uid
    analyser = str(result.get("analyser") or "unknown")
    map_ds = None
    map_kind = None
    heatmap = getattr(analysis, "heatmap", None)
    if heatmap is not None:
        try:
            map_ds = results.build_parametric_map(
                image_ds,
                heatmap,
                frame_index=frame,
                run_name=run_name,
                study_uid=study_uid,
                analyser=analyser,
            )
            map_kind = "parametric-map"
        except (ValueError, TypeError, AttributeError, RuntimeError) as exc:  # highdicom refuses the geometry
            log.info("parametric map not possible for item %s (%s): secondary capture", item.log_id, exc)
    if map_ds is None and (heatmap is not None or getattr(analysis, "overlay_png", None) is not None):
        map_ds = results.build_secondary_capture(
            image_ds,
            display=getattr(analysis, "image", None),
            heatmap=heatmap,
            overlay_png=getattr(analysis, "overlay_png", None),
            run_name=run_name,
            study_uid=study_uid,
        )
        map_kind = "secondary-capture"
    sr = results.build_sr(
        result,
        image_ds,
        frame_index=frame,
        run_name=run_name,
        study_uid=study_uid,
        map_ds=map_ds,
        knowledge_base=knowledge_base_version(bundle),
    )
    objects = [sr] if map_ds is None else [map_ds, sr]
    (client or source.default_client()).store(objects, study_uid=study_uid)
    log.info("item %s: wrote back %d result object(s)", item.log_id, len(objects))
    return {
        "sr": str(sr.SOPInstanceUID),
        "map": None if map_ds is None else str(map_ds.SOPInstanceUID),
        "map_kind": map_kind,
    }
