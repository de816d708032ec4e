"""The gate's first rule: what the DICOM header says about modality and body part.

The built-in model knows head CT and MR only. When the header of a DICOM image (the ``meta`` of a
:class:`zebra_intake.types.MedicalImage`) says otherwise, the image is refused as ``out_of_domain`` before
any pixel is looked at, with a reason that names what the header says:

* **Modality** (0008,0060) present and not ``CT`` or ``MR``: CR, DX, US, NM, PT, MG, XA, OT, SEG ... are
  refused. When the modality is empty, the SOP class stands in for it (an "Ultrasound Image Storage" file
  without a modality is still an ultrasound image).
* **Body Part Examined** (0018,0015) present, informative and not a head part. Head parts are matched
  generously (:data:`HEAD_PARTS`): the head itself, the brain and its parts, the skull and the face with
  its cavities (orbit, sella, internal auditory canal, ear, sinuses, nose, jaw ...), ``HEADNECK`` and any
  value that begins with ``HEAD``/``BRAIN``/``SKULL``, and a few non-English spellings (``KOPF``,
  ``SCHAEDEL``, ``CRANE``, ``CABEZA`` ...). A bone's head (``HUMERAL HEAD``, ``FEMORAL HEAD``) is not.
  The neck alone (``NECK``, ``CSPINE``, ``THYROID``) is not a head part. Placeholders (``UNKNOWN``,
  ``OTHER``, ``-``) count as absent.

* **Descriptions** (Study / Series Description, Protocol Name) that name another body region and never the
  head, when Body Part Examined is empty: the loader keeps one word of a closed list from them before
  de-identification removes them (``meta["described_region"]``, see :mod:`zebra_intake.regions`).
  pydicom-data's shoulder MR (``SHOULDER`` in its Study Description only) is refused by this rule.
* **Field of view** (Pixel Spacing x Rows / Columns) wider than :data:`MAX_HEAD_FOV_MM` in either direction:
  an adult head is about 150 mm wide and 200 mm long, and head CT and MR protocols use fields of view of about
  180-260 mm (up to about 300 mm with the neck); chest, abdomen and pelvis are imaged with 320-500 mm. No data
  chose the threshold; it catches body CT and MR whose Body Part Examined was removed or never filled.

Without metadata (PNG, JPEG, arrays) or when the header says CT/MR of the head or says nothing about the
body part or the field of view, this rule has no verdict and the image-based checks decide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vlm.types import GateResult
from zebra_intake.regions import REGION_NAMES

#: Widest field of view, in mm, that a head image has (module docstring).
MAX_HEAD_FOV_MM = 330.0

#: Modalities the built-in model reads.
READ_MODALITIES = frozenset({"CT", "MR"})

#: Words for DICOM modality codes, for the reason given to the user.
MODALITY_NAMES: dict[str, str] = {
    "CR": "computed radiography",
    "DX": "digital radiography",
    "RG": "radiographic imaging",
    "US": "ultrasound",
    "NM": "nuclear medicine",
    "PT": "PET",
    "MG": "mammography",
    "XA": "X-ray angiography",
    "RF": "fluoroscopy",
    "IO": "intra-oral radiography",
    "PX": "panoramic X-ray",
    "OT": "other-modality",
    "SC": "secondary capture",
    "SEG": "segmentation",
    "RTDOSE": "radiotherapy dose",
    "RTIMAGE": "radiotherapy image",
    "RTSTRUCT": "radiotherapy structure set",
    "XC": "external-camera photography",
    "ES": "endoscopy",
    "OP": "ophthalmic photography",
    "OPT": "ophthalmic tomography",
    "SM": "slide microscopy",
    "GM": "general microscopy",
    "ECG": "electrocardiography",
    "BMD": "bone densitometry",
    "DOC": "document",
    "SR": "structured report",
}

#: SOP classes that say the modality when the Modality attribute is empty (substring -> code).
SOP_CLASS_MODALITIES: tuple[tuple[str, str], ...] = (
    ("ultrasound", "US"),
    ("computed radiography", "CR"),
    ("digital x-ray", "DX"),
    ("mammography", "MG"),
    ("nuclear medicine", "NM"),
    ("positron emission", "PT"),
    ("x-ray angiographic", "XA"),
    ("radiofluoroscopic", "RF"),
    ("intra-oral", "IO"),
    ("segmentation", "SEG"),
    ("rt dose", "RTDOSE"),
    ("rt image", "RTIMAGE"),
    ("photographic", "XC"),
    ("microscopic", "SM"),
    ("ophthalmic", "OP"),
    ("endoscopic", "ES"),
)

#: Body Part Examined values (letters only, upper case) or words in them that mean the head.
HEAD_PARTS = frozenset(
    {
        # the head, the brain and its parts
        "HEAD", "BRAIN", "SKULL", "CRANIUM", "CRANIAL", "INTRACRANIAL", "CEREBRUM", "CEREBRAL", "CEREBELLUM",
        "BRAINSTEM", "PONS", "MIDBRAIN", "HYPOTHALAMUS", "CIRCLEOFWILLIS", "NEURO", "NEUROCRANIUM",
        # skull base, face and its cavities
        "SELLA", "PITUITARY", "HYPOPHYSIS", "IAC", "EAR", "TEMPORALBONE", "PETROUS", "MASTOID",
        "COCHLEA", "ORBIT", "ORBITS", "EYE", "EYES", "FACE", "FACIAL", "SINUS", "SINUSES",
        "PARANASALSINUS", "PARANASALSINUSES", "NOSE", "NASAL", "NASOPHARYNX", "MAXILLA", "MANDIBLE",
        "JAW", "TMJ", "ZYGOMA", "TEETH", "DENTAL", "SKULLBASE",
        # combinations and other languages
        "HEADNECK", "HEADANDNECK", "KOPF", "SCHAEDEL", "SCHADEL", "HIRN", "GEHIRN", "SCHADELHIRN",
        "CRANE", "TETE", "CERVEAU", "CABEZA", "CRANEO", "CEREBRO", "TESTA", "CRANIO", "ENCEFALO",
        "HOOFD", "SCHEDEL", "HERSENEN",
    }
)  # fmt: skip

#: Prefixes (letters only) that mean the head however the value goes on (``HEADNECK``, ``BRAINSTEM`` ...).
HEAD_PREFIXES: tuple[str, ...] = ("HEAD", "BRAIN", "SKULL", "CRANI", "CEREB")

#: Stems that make ``HEAD`` the head of a bone or an organ (``HUMERAL HEAD``, ``HEAD OF FEMUR``).
NOT_HEAD_STEMS: tuple[str, ...] = (
    "HUMER", "FEMOR", "FEMUR", "RADIUS", "RADIAL", "FIBUL", "ULNA", "METATARS", "METACARP", "PANCREA",
    "TALUS", "SHOULDER",
)  # fmt: skip

#: Values that say nothing about the body part.
UNINFORMATIVE_PARTS = frozenset({"", "UNKNOWN", "OTHER", "NONE", "NA", "NOTAPPLICABLE", "UNSPECIFIED", "ANY"})


def _letters(value: str) -> str:
    return re.sub(r"[^A-Z]", "", value.upper())


def is_head_part(body_part: str) -> bool:
    """Whether a Body Part Examined value names the head (see :data:`HEAD_PARTS`)."""
    words = re.findall(r"[A-Z]+", body_part.upper())
    joined = _letters(body_part)
    if any(stem in joined for stem in NOT_HEAD_STEMS):
        return False
    if joined in HEAD_PARTS or joined.startswith(HEAD_PREFIXES):
        return True
    return any(w in HEAD_PARTS or w.startswith(HEAD_PREFIXES) for w in words)


def _modality_of(meta: Mapping[str, Any]) -> str:
    modality = str(meta.get("modality") or "").strip().upper()
    if modality:
        return modality
    sop = str(meta.get("sop_class") or "").lower()
    return next((code for text, code in SOP_CLASS_MODALITIES if text in sop), "")


def _modality_words(modality: str) -> str:
    """``"an ultrasound (US)"``, ``"a PET (PT)"``, ``"a modality XY"``."""
    name = MODALITY_NAMES.get(modality)
    words = f"{name} ({modality})" if name else f"modality {modality}"
    article = "an" if words.lstrip("'")[:1] in ("a", "e", "i", "o", "u", "X") else "a"
    return f"{article} {words}"


def metadata_of(image: Any) -> Mapping[str, Any] | None:
    """The header attributes of an input: a ``MedicalImage``'s ``meta``, a mapping itself, else ``None``."""
    if isinstance(image, Mapping):
        return image
    meta = getattr(image, "meta", None)
    return meta if isinstance(meta, Mapping) else None


def field_of_view(image: Any, meta: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(rows, columns)`` extent in mm from the pixel spacing (a ``MedicalImage``'s ``pixel_spacing`` or the
    meta's ``pixel_spacing``) and the meta's ``rows``/``columns``; ``None`` when either is unknown."""
    spacing = getattr(image, "pixel_spacing", None) or meta.get("pixel_spacing")
    rows, cols = meta.get("rows"), meta.get("columns")
    try:
        if not spacing or not rows or not cols:
            return None
        return float(spacing[0]) * int(rows), float(spacing[1]) * int(cols)
    except (TypeError, ValueError, IndexError):
        return None


def check_metadata(meta: Any) -> GateResult | None:
    """The verdict of the DICOM header, or ``None`` when it allows a head CT/MR image (or is absent).

    Args:
        meta: A ``MedicalImage`` (its ``meta`` is read) or its ``meta`` dict (``modality``, ``body_part``,
            ``sop_class``); anything else (arrays, PIL images, ``None``) has no header.

    Returns:
        An ``out_of_domain`` :class:`GateResult` naming what the header says, or ``None``.
    """
    source = meta
    meta = metadata_of(meta)
    if not meta:
        return None
    modality = _modality_of(meta)
    if modality == "MRI":
        modality = "MR"
    tail = "the built-in model reads head CT and MR only, so the image is not described."
    if modality and modality not in READ_MODALITIES:
        return GateResult(
            False,
            f"The DICOM header says this is {_modality_words(modality)} image; {tail}",
            "out_of_domain",
            {"metadata_rule": 1.0},
        )
    part = str(meta.get("body_part") or "").strip()
    image = f"{modality} image" if modality else "image"
    if _letters(part) in UNINFORMATIVE_PARTS or is_head_part(part):
        region = str(meta.get("described_region") or "")
        if not is_head_part(part) and region and region != "HEAD":
            where = REGION_NAMES.get(region, region.lower().replace("_", " "))
            return GateResult(
                False,
                f"The DICOM header's descriptions (Study or Series Description, Protocol Name) name {where} and "
                f"not the head; {tail}",
                "out_of_domain",
                {"metadata_rule": 1.0},
            )
        fov = field_of_view(source, meta)
        if fov is not None and max(fov) > MAX_HEAD_FOV_MM and not is_head_part(part):
            return GateResult(
                False,
                f"The DICOM header gives this {image} a field of view of {fov[1]:.0f} x {fov[0]:.0f} mm, wider than "
                f"any head (at most {MAX_HEAD_FOV_MM:.0f} mm): it shows the body, not the head; {tail}",
                "out_of_domain",
                {"metadata_rule": 1.0, "field_of_view_mm": round(max(fov), 1)},
            )
        return None
    return GateResult(
        False,
        f"The DICOM header says this {image} shows the {part.lower()} (Body Part Examined: {part}), "
        f"not the head; {tail}",
        "out_of_domain",
        {"metadata_rule": 1.0},
    )
