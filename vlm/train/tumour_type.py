"""The tumour-type head and its domain head, fitted on the brain-tumour MRI set's **train** split:
``zebra vlm fit-tumour-type``.

The MedPix captions name few diagnoses an image shows; the brain-tumour set labels every one of its axial MRIs
as glioma, meningioma, pituitary tumour or no tumour. A multinomial head on the finding features
(:func:`vlm.findings.findings_features`, through the checkpoint's own projection) learns those four classes.
Trained on one public set, it is wrong far outside it: on MedPix train images, which it never saw, it called 127
of 742 head CT and MR images a tumour at probability >= 0.9, sarcoidosis and disk herniations included. So a
second, binary head says whether an image is *like the tumour set's images* (its applicability domain), fitted
on the tumour set's train images against the MedPix train images; the tumour type is used only where that head
states "tumour set" (:meth:`vlm.findings.FindingsModel._tumour_type`).

Protocol (train splits only; ``valid`` and ``test`` are refused): :func:`vlm.train.findings.fit_single_head` for
both heads (L2 strength by 5-fold grouped out-of-fold log-loss, temperature on the out-of-fold logits; groups:
the source slice of each augmented tumour image, the case of each MedPix image); the type is stated from
:data:`TYPE_STATED`, a cue (said hedged, and a retrieval query term) from :data:`TYPE_CUE`; the domain head
states "tumour set" from :data:`DOMAIN_STATED`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vlm.findings import IN_DOMAIN, NO_TUMOUR, TUMOUR_DOMAIN, TUMOUR_TYPE, FindingsModel

log = logging.getLogger(__name__)

#: The tumour set's class names (its ``data.yaml``) -> the words the caption and the agent use.
CLASS_WORDS: dict[str, str] = {
    "Glioma": "glioma",
    "Meningioma": "meningioma",
    "No_Tumor": NO_TUMOUR,
    "Pituitary": "pituitary adenoma",
}
TYPE_STATED = 0.9
TYPE_CUE = 0.5
DOMAIN_STATED = 0.9
OUT_OF_DOMAIN = "other"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class TumourImage:
    """One image of the tumour set with its class words (``path`` is what the feature extractor reads)."""

    path: Path
    label: str | None
    group: str


def read_tumour_images(root: str | Path, split: str = "train") -> list[TumourImage]:
    """The training images of :func:`labelled_tumour_images`.

    Raises:
        ConfigError: For ``valid``/``val``/``dev``/``test`` (never fitted on), and as
            :func:`labelled_tumour_images`.
    """
    from zebra.errors import ConfigError

    if split in ("valid", "val", "dev", "test"):
        raise ConfigError(f"Refusing to fit the tumour-type head on the {split} split.", hint="Use train.")
    return labelled_tumour_images(root, split)


def labelled_tumour_images(root: str | Path, split: str) -> list[TumourImage]:
    """The images of one split of a YOLO brain-tumour folder (``data.yaml``, ``<split>/images``,
    ``<split>/labels``), each labelled by its objects' class (``None`` when they disagree; no object: no
    tumour). For evaluation; fitting goes through :func:`read_tumour_images`.

    Raises:
        ConfigError: Unknown class names, or fewer than 50 images.
        DatasetError: ``data.yaml`` missing or without class names.
    """
    from zebra.errors import ConfigError
    from zebra_datasets.convert.yolo import read_class_names

    root = Path(root).expanduser()
    names = read_class_names(root / "data.yaml")  # DatasetError when missing or unusable
    unknown = [n for n in names if n not in CLASS_WORDS]
    if unknown:
        raise ConfigError(
            f"Tumour classes {unknown} have no caption words.", hint=f"Known: {sorted(CLASS_WORDS)}."
        )
    out = []
    folder = root / split / "images"
    paths = (
        sorted(q for q in folder.glob("*") if q.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    )
    for path in paths:
        label_file = root / split / "labels" / f"{path.stem}.txt"
        rows = label_file.read_text(encoding="utf-8").split("\n") if label_file.is_file() else []
        classes = {CLASS_WORDS[names[int(r.split()[0])]] for r in rows if r.strip()}
        label = classes.pop() if len(classes) == 1 else (NO_TUMOUR if not classes else None)
        # Roboflow names augmented copies "<source>_jpg.rf.<hash>.jpg": one group per source slice and class
        out.append(TumourImage(path, label, f"{path.name.split('.rf.')[0]}|{label}"))
    if len(out) < 50:
        raise ConfigError(f"Only {len(out)} {split} images under {root}.", hint="Check --tumor.")
    return out


def projected(model: FindingsModel, raw: np.ndarray) -> np.ndarray:
    """Raw finding features as the checkpoint's heads read them (standardised, projected)."""
    x = (np.asarray(raw, dtype=np.float64) - model.mean) / model.scale
    return x @ model.proj if model.proj is not None else x


def fit_tumour_heads(
    model: FindingsModel,
    tumour_x: np.ndarray,
    tumour_images: Sequence[TumourImage],
    other_x: np.ndarray,
    other_groups: Sequence[str],
) -> tuple[FindingsModel, dict[str, Any]]:
    """Adds (or replaces) the tumour-type and domain heads of ``model``.

    Args:
        model: The checkpoint's finding heads (their standardisation and projection are reused).
        tumour_x: Raw finding features of ``tumour_images``.
        tumour_images: The tumour set's train images.
        other_x: Raw finding features of other in-scope training images (MedPix train), the domain head's
            negatives.
        other_groups: Their CV groups (case ids).

    Returns:
        The new model (the input is not changed) and the fit reports.
    """
    from vlm.train.findings import fit_single_head

    xt, xo = projected(model, tumour_x), projected(model, other_x)
    classes = sorted({im.label for im in tumour_images if im.label is not None})
    groups = [im.group for im in tumour_images]
    kind, kind_report = fit_single_head(
        xt, [im.label for im in tumour_images], classes, groups, target_precision=TYPE_STATED
    )
    x = np.concatenate([xt, xo])
    labels = [IN_DOMAIN] * len(xt) + [OUT_OF_DOMAIN] * len(xo)
    domain, domain_report = fit_single_head(
        x, labels, [OUT_OF_DOMAIN, IN_DOMAIN], groups + list(other_groups), target_precision=DOMAIN_STATED
    )
    if kind is None or domain is None:
        from zebra.errors import ConfigError

        raise ConfigError("The tumour set needs at least two classes.", hint=f"Found: {classes}.")
    heads = dict(model.heads)
    heads[TUMOUR_TYPE] = replace(kind, query_threshold=TYPE_CUE)
    heads[TUMOUR_DOMAIN] = domain
    reports = {TUMOUR_TYPE: kind_report, TUMOUR_DOMAIN: domain_report}
    meta = dict(model.meta)
    meta["cv"] = {**(meta.get("cv") or {}), **reports}
    meta["data"] = {
        **(meta.get("data") or {}),
        "tumour": f"brain-tumour MRI train split: {len(xt)} images; domain negatives: {len(xo)} MedPix train images",
    }
    log.info("tumour-type head: %s", kind_report)
    log.info("tumour-domain head: %s", domain_report)
    return FindingsModel(model.mean, model.scale, heads, meta, proj=model.proj), reports


def fit_tumour_type(vlm: Any, tumour_root: str | Path, medpix_root: str | Path) -> tuple[FindingsModel, dict]:
    """Features of the tumour train images and the MedPix train images through ``vlm`` (a
    :class:`~vlm.backends.builtin.BuiltinVLM` with finding heads), then :func:`fit_tumour_heads`.

    Raises:
        ConfigError: No finding heads in the checkpoint, or missing data.
    """
    from vlm.train.findings import image_features, read_medpix_images
    from zebra.errors import ConfigError

    model = getattr(vlm, "findings_model", None)
    if model is None:
        raise ConfigError("The checkpoint has no finding heads.", hint="Run `zebra vlm fit-findings` first.")
    tumour = read_tumour_images(tumour_root, "train")
    medpix = read_medpix_images(medpix_root, ["train"])
    log.info("tumour-type head: %d tumour-set and %d MedPix train images", len(tumour), len(medpix))
    return fit_tumour_heads(
        model, image_features(vlm, tumour), tumour, image_features(vlm, medpix), [im.case_id for im in medpix]
    )
