"""The body region that a DICOM file's free-text descriptions name, kept as one word of a closed list.

PS3.15's basic profile removes Study Description, Series Description and Protocol Name, and rightly so: they
are free text and may carry names. But they are often the only place that says what was imaged (many
scanners leave Body Part Examined empty: pydicom-data's shoulder MR says ``SHOULDER`` in its Study
Description only). Before de-identification, :func:`described_region` reads those descriptions and keeps
at most one word from :data:`REGION_WORDS` (a closed list, so nothing identifying can pass: the spirit of
PS3.15's Clean Descriptors option, where only a known-safe part of a description is retained). The gate
then refuses a file whose descriptions name another body region and never the head.

Rules, chosen from anatomy and scanner naming, not from data:

* Words are matched whole, on the upper-cased text split at anything that is not a letter
  (``L-SPINE`` -> ``L``, ``SPINE``; ``t1_vibe_fs_tra`` -> ``T``, ``VIBE`` ...), plus a few joined forms
  (``LSPINE``, ``CSPINE``).
* A head word anywhere (``HEAD``, ``BRAIN``, ``ORBIT``, ``SELLA`` ...) makes the region ``HEAD``: a
  "head and neck" or "brain + C-spine" study shows the head.
* Otherwise the first non-head region found, in the order of the fields (study, series, protocol).
* Words that are also common in head protocols are left out (``NECK``: head-and-neck angiography;
  ``SPINE`` is kept since a spine series is not a head image).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

#: Region -> the whole words (upper case, letters only) that name it in a description.
REGION_WORDS: dict[str, frozenset[str]] = {
    "HEAD": frozenset(
        {
            "HEAD", "BRAIN", "SKULL", "CRANIUM", "CRANIAL", "NEURO", "CEREBRAL", "CEREBELLUM", "SELLA",
            "PITUITARY", "ORBIT", "ORBITS", "IAC", "IACS", "SINUS", "SINUSES", "FACE", "FACIAL", "TEMPORAL",
            "MASTOID", "STROKE", "KOPF", "SCHAEDEL", "CRANE", "CABEZA", "CEREBRO",
        }
    ),
    "SHOULDER": frozenset({"SHOULDER", "SHOULDERS", "SCHULTER", "EPAULE", "HOMBRO", "ROTATOR", "GLENOHUMERAL"}),
    "UPPER_LIMB": frozenset(
        {"ELBOW", "WRIST", "HAND", "HANDS", "FINGER", "FINGERS", "THUMB", "FOREARM", "HUMERUS", "ARM"}
    ),
    "LOWER_LIMB": frozenset(
        {
            "KNEE", "KNEES", "HIP", "HIPS", "ANKLE", "ANKLES", "FOOT", "FEET", "TOE", "TOES", "FEMUR", "TIBIA",
            "THIGH", "CALF", "LEG", "LEGS", "KNIE", "HUEFTE", "GENOU",
        }
    ),
    "SPINE": frozenset(
        {"SPINE", "LSPINE", "CSPINE", "TSPINE", "LUMBAR", "THORACIC", "SACRUM", "SACRAL", "COCCYX", "WIRBELSAEULE"}
    ),
    "CHEST": frozenset(
        {"CHEST", "THORAX", "LUNG", "LUNGS", "PULMONARY", "HEART", "CARDIAC", "CORONARY", "BREAST", "BREASTS",
         "MAMMO", "THORAKS", "TORAX", "POUMON"}
    ),
    "ABDOMEN": frozenset(
        {
            "ABDOMEN", "ABDOMINAL", "ABD", "LIVER", "HEPATIC", "PANCREAS", "KIDNEY", "KIDNEYS", "RENAL",
            "SPLEEN", "BOWEL", "COLON", "ENTEROGRAPHY", "MRCP", "ADRENAL", "ADRENALS", "BAUCH", "ABDOMINALE",
        }
    ),
    "PELVIS": frozenset({"PELVIS", "PELVIC", "PROSTATE", "BLADDER", "UTERUS", "OVARY", "OVARIES", "RECTUM", "BECKEN"}),
    "WHOLE_BODY": frozenset({"WHOLEBODY", "WB"}),
}  # fmt: skip

#: Words for each region, for the reason given to the user.
REGION_NAMES: dict[str, str] = {
    "HEAD": "the head",
    "SHOULDER": "the shoulder",
    "UPPER_LIMB": "the arm",
    "LOWER_LIMB": "the leg or hip",
    "SPINE": "the spine",
    "CHEST": "the chest",
    "ABDOMEN": "the abdomen",
    "PELVIS": "the pelvis",
    "WHOLE_BODY": "the whole body",
}

#: Description attributes read, in order (all removed afterwards by the basic profile).
DESCRIPTION_KEYWORDS: tuple[str, ...] = ("StudyDescription", "SeriesDescription", "ProtocolName")

_JOINED = (("WHOLE", "BODY", "WHOLEBODY"),)


def _words(text: str) -> list[str]:
    words = re.findall(r"[A-Z]+", text.upper())
    for first, second, joined in _JOINED:
        words += [joined for a, b in itertools.pairwise(words) if (a, b) == (first, second)]
    return words


def region_of_texts(texts: Iterable[str]) -> str:
    """The region that free texts name: ``"HEAD"`` when any names the head, else the first other region
    found, else ``""`` (see the module docstring).

    Args:
        texts: Descriptions in the order they are trusted.

    Returns:
        A key of :data:`REGION_WORDS` or ``""``.
    """
    found: list[str] = []
    for text in texts:
        for word in _words(text or ""):
            for region, words in REGION_WORDS.items():
                if word in words and region not in found:
                    found.append(region)
    if "HEAD" in found:
        return "HEAD"
    return found[0] if found else ""


def described_region(ds: object) -> str:
    """The body region named by a data set's descriptions (read before de-identification removes them).

    Args:
        ds: A pydicom ``Dataset`` (anything with ``get``); unreadable values count as empty.

    Returns:
        A key of :data:`REGION_WORDS`, or ``""`` when the descriptions name no region.
    """
    texts = []
    for keyword in DESCRIPTION_KEYWORDS:
        try:
            value = ds.get(keyword)  # type: ignore[attr-defined]
        except Exception:
            value = None
        texts.append(str(value) if value is not None else "")
    return region_of_texts(texts)
