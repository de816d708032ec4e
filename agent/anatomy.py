"""Anatomical consistency: which body region a candidate diagnosis belongs to, against the imaged region.

The built-in image model reads head CT and MR; an accepted image is therefore an image of the head (the
region is ``"head"``). A candidate's region is read, most reliable first, from:

1. the ACR codes of its MedPix evidence (first digit: 1 skull and contents, 2 face, mastoids and neck are the
   head; 0 breast, 3 spine, 4 skeleton, 5 heart, 6 chest, 7 gastrointestinal, 8 genitourinary are elsewhere;
   9, vascular and lymphatic, says nothing about the region);
2. the words of its name (``"cerebral"``, ``"intracranial"`` ... against ``"hepatic"``,
   ``"appendicitis"`` ...);
3. the ICD-10 code of its name (:func:`agent.taxonomy.icd_code`): chapters and blocks of the nervous system,
   eye, ear, brain and head tumours, cerebrovascular disease, head injuries and head malformations are the head;
   digestive, genitourinary, respiratory, pregnancy, skin and musculoskeletal chapters and the neoplasm blocks
   of those organs are elsewhere; lymphoid, haematopoietic and secondary neoplasms are systemic.

``"head"``: consistent with a head image. ``"other"``: only other regions. ``"systemic"``: both (e.g.
metastases to the brain from a lung primary), and ``"unknown"``: nothing says. Only ``"other"`` is
inconsistent with a head image.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

#: ACR first digits of the head, and of other regions.
HEAD_ACR = frozenset({"1", "2"})
OTHER_ACR = frozenset({"0", "3", "4", "5", "6", "7", "8"})
REGIONS: tuple[str, ...] = ("head", "other", "systemic", "unknown")

_HEAD_WORDS = (
    r"brain|cerebr\w*|cerebell\w*|intracranial|cranial|cranio\w*|crani\w*|skull|calvari\w*|mening\w*|"
    r"encephal\w*|gli\w*|astrocyt\w*|oligodendro\w*|ependym\w*|medulloblast\w*|ventric\w*|hydroceph\w*|"
    r"pituitar\w*|sella\w*|suprasellar|pineal\w*|hypothalam\w*|thalam\w*|basal ganglia|putamen|caudate|"
    r"brainstem|pons|pontine|midbrain|medulla oblongata|chiasm\w*|optic|orbit\w*|ocular|retin\w*|"
    r"subdural|epidural|subarachnoid|extra-axial|intra-axial|dural|falx|tentori\w*|"
    r"neurocyst\w*|neuro\w*|schwannoma|acoustic|vestibul\w*|cochle\w*|mastoid\w*|temporal bone|"
    r"sinus\w*|nasal|nasopharyn\w*|facial|face|mandib\w*|maxill\w*|head|scalp|"
    r"stroke|infarct\w*|aneurysm\w*|moyamoya|cavernoma|arteriovenous malformation|avm|"
    r"migraine|epilep\w*|seizure\w*|dementia|alzheimer\w*|parkinson\w*|leukodystroph\w*|"
    r"demyelinat\w*|multiple sclerosis|microcephal\w*|macrocephal\w*|holoprosenceph\w*|lissenceph\w*|"
    r"polymicrogyri\w*|schizenceph\w*|heterotopi\w*|chiari|dandy|corpus callosum|abscess of brain"
)
_OTHER_WORDS = (
    r"liver|hepat\w*|biliar\w*|gallbladder|cholecyst\w*|cholangi\w*|pancrea\w*|spleen|splen\w*|"
    r"stomach|gastr\w*|duoden\w*|jejun\w*|ile\w*|bowel|intestin\w*|colon|colitis|colorectal|rect\w*|"
    r"append\w*|esophag\w*|oesophag\w*|peritone\w*|mesenter\w*|abdom\w*|hernia|"
    r"kidney\w*|renal|nephr\w*|ureter\w*|bladder|urethr\w*|prostat\w*|testi\w*|scrot\w*|"
    r"uter\w*|ovar\w*|cervi\w* uteri|endometri\w*|placent\w*|ectopic pregnancy|"
    r"lung\w*|pulmonar\w*|pleur\w*|bronch\w*|pneumon\w*|tracheo\w*|thora\w*|mediastin\w*|"
    r"breast|mammar\w*|heart|cardi\w*|myocard\w*|pericard\w*|valv\w*|aort\w*|coronary|"
    r"spine|spinal|vertebr\w*|disc herniation|lumbar|thoracic spine|sacr\w*|cauda equina|"
    r"femur|femoral|tibia\w*|fibula\w*|humer\w*|radius|ulna\w*|knee|hip|shoulder|ankle|wrist|elbow|"
    r"pelvi\w*|adrenal\w*|thyroid\w*|parathyroid\w*|limb|extremit\w*|foot|hand|skin|cutaneous"
)
_HEAD_RE = re.compile(rf"\b(?:{_HEAD_WORDS})\b")
_OTHER_RE = re.compile(rf"\b(?:{_OTHER_WORDS})\b")
#: Words that make a "head" reading ambiguous: "sinus" also names venous sinuses, "head of pancreas" ...
_HEAD_OF = re.compile(r"\bhead of (?:the )?(?:pancreas|femur|humerus|radius)\b")


def _combine(head: bool, other: bool) -> str:
    if head and other:
        return "systemic"
    if head:
        return "head"
    if other:
        return "other"
    return "unknown"


def region_of_acr(codes: Iterable[str | None]) -> str:
    """Region of a set of ACR codes (module docstring, rule 1)."""
    digits = {str(c).strip()[:1] for c in codes if c and str(c).strip()[:1].isdigit()}
    return _combine(bool(digits & HEAD_ACR), bool(digits & OTHER_ACR))


def _icd_region(code: str) -> str:
    letter, num = code[:1].upper(), code[1:3]
    n = int(num) if num.isdigit() else -1
    if letter == "G" or letter == "H":
        return "head"
    if letter == "C":
        if 0 <= n <= 14 or 30 <= n <= 31 or 69 <= n <= 72 or n == 75:
            return "head"
        if 76 <= n <= 97:  # ill-defined, secondary, lymphoid and haematopoietic: anywhere
            return "systemic"
        return "other"
    if letter == "D":
        if n in (31, 32, 33, 35, 42, 43, 44):
            return "head"
        if n < 49:
            return "other"
        return "unknown"
    if letter == "I":
        return "head" if 60 <= n <= 69 else "other"
    if letter == "S":
        return "head" if n <= 9 else "other"
    if letter == "Q":
        if n <= 7 or 10 <= n <= 18 or n == 75:
            return "head"
        if 20 <= n <= 64 or 65 <= n <= 74:
            return "other"
        return "unknown"
    if letter in ("K", "N", "J", "O", "L", "M"):
        return "other"
    return "unknown"


@functools.lru_cache(maxsize=8192)
def region_of_name(name: str) -> str:
    """Region of a diagnosis name from its words, else its ICD-10 code (rules 2 and 3)."""
    from agent.taxonomy import icd_code

    text = (name or "").lower()
    code = icd_code(name)
    by_code = _icd_region(code) if code else "unknown"
    cleaned = _HEAD_OF.sub(" ", text)
    by_words = _combine(bool(_HEAD_RE.search(cleaned)), bool(_OTHER_RE.search(cleaned)))
    # the name's own words beat the name -> ICD-10 mapping, which is fuzzy
    return by_words if by_words != "unknown" else by_code


def candidate_region(label: str, acr_codes: Iterable[str | None] = ()) -> str:
    """Region of a candidate: its evidence's ACR codes first, then its name (module docstring)."""
    by_acr = region_of_acr(acr_codes)
    if by_acr != "unknown":
        return by_acr
    return region_of_name(label)


def consistent_with(region: str, imaged: str | None) -> bool:
    """Whether a candidate of ``region`` can be seen on an image of ``imaged`` (``None``: no image)."""
    if imaged is None:
        return True
    if imaged == "head":
        return region != "other"
    return True


def differential_regions(state: dict, k: int | None = None) -> list[str] | None:
    """Regions of the (top-``k``) differential entries of a final agent state when an image was accepted,
    ``None`` when none was (there is no imaged region to be consistent with)."""
    from agent.evidence import imaged_region

    if imaged_region(state.get("findings") or []) is None:
        return None
    entries = (state.get("differential") or [])[:k]
    return [candidate_region(str(d.get("diagnosis")), d.get("acr_codes") or []) for d in entries]
