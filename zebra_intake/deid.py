"""DICOM de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile.

The attribute table (``deid_basic_profile.json``, from PS3.15 Table E.1-1) maps each listed attribute to
its action: D (dummy), Z (zero-length), X (remove), K (keep), C (clean), U (pseudonymous UID) or a
combination. Zebra never writes the data set back, so for combinations it applies the strictest action
(the first of X, Z); see the ``actions`` notes in the table file. On top of the table:

* every private attribute is removed, at every level of nesting;
* curve groups (50xx,xxxx), overlay data (60xx,3000) and overlay comments (60xx,4000) are removed;
* every other UI attribute that is not a well-known DICOM UID (1.2.840.10008.*) or a class / transfer
  syntax UID is replaced like a U attribute;
* Patient Identity Removed is set to YES and De-identification Method describes what was done.

Pseudonymous UIDs are ``2.25.<int>`` where the integer is the first 128 bits of
HMAC-SHA256(salt, "uid:" + original UID): the same UID always gets the same pseudonym under one salt, and
nobody without the salt can link it back.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from zebra.logs import register_identifier
from zebra_intake.types import DeidReport

PROFILE_NAME = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
PROFILE_FILE = "deid_basic_profile.json"

METHOD = (
    "PS3.15 Basic Application Level Confidentiality Profile (Table E.1-1; combined actions resolved to "
    "the strictest), all private attributes, curves, overlay data and comments removed. UIDs replaced by "
    "2.25.<first 128 bits of HMAC-SHA256(salt, original UID)>; patient pseudonym = 'P' + first 16 hex "
    "digits of HMAC-SHA256(salt, PatientID + IssuerOfPatientID). The salt is secret and never reported."
)

#: Dummy values for action D, valid for their VR. VRs not listed get a zero-length value instead.
_DUMMY: dict[str, Any] = {
    "PN": "REMOVED",
    "LO": "REMOVED",
    "SH": "REMOVED",
    "LT": "REMOVED",
    "ST": "REMOVED",
    "UT": "REMOVED",
    "UC": "REMOVED",
    "CS": "REMOVED",
    "AE": "REMOVED",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
}

#: UI attributes that name classes, syntaxes or coding schemes (public, not instance identifiers).
_KEEP_UID_KEYWORDS = frozenset(
    {
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "ContextGroupExtensionCreatorUID",
        "PrivateInformationCreatorUID",
    }
)

#: File meta attributes naming the sending/receiving systems; not in Table E.1-1 but identifying a site.
_META_REMOVE = frozenset({0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102})

_WELL_KNOWN_ROOT = "1.2.840.10008."


@dataclass(frozen=True)
class Profile:
    """The attribute table of the basic profile.

    Attributes:
        actions: Tag (as int) to (keyword, action) for the attributes listed by tag.
        source: Where the table comes from.
    """

    actions: dict[int, tuple[str, str]]
    source: str

    def action_for(self, tag: int) -> tuple[str, str] | None:
        """(keyword, action) for a tag, including the repeating curve / overlay groups."""
        hit = self.actions.get(tag)
        if hit is not None:
            return hit
        group, elem = tag >> 16, tag & 0xFFFF
        if 0x5000 <= group <= 0x50FF and group % 2 == 0:
            return ("CurveData", "X")
        if 0x6000 <= group <= 0x60FF and group % 2 == 0:
            if elem == 0x3000:
                return ("OverlayData", "X")
            if elem == 0x4000:
                return ("OverlayComments", "X")
        return None


@functools.lru_cache(maxsize=1)
def load_profile() -> Profile:
    """Loads the packaged attribute table (cached)."""
    text = resources.files("zebra_intake").joinpath(PROFILE_FILE).read_text(encoding="utf-8")
    payload = json.loads(text)
    actions: dict[int, tuple[str, str]] = {}
    for row in payload["attributes"]:
        tag = row["tag"]
        if "x" in tag:
            continue  # repeating groups are handled by Profile.action_for
        actions[int(tag, 16)] = (row["keyword"], row["action"])
    return Profile(actions=actions, source=payload.get("source", ""))


def pseudo_uid(uid: str, salt: bytes) -> str:
    """Deterministic pseudonymous UID under the ``2.25.`` root (at most 44 characters)."""
    clean = str(uid).strip().rstrip("\x00").strip()
    digest = hmac.new(salt, b"uid:" + clean.encode("utf-8", "replace"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def pseudo_patient_id(patient_id: str, issuer: str, salt: bytes) -> str:
    """Deterministic patient pseudonym from PatientID and IssuerOfPatientID."""
    material = f"patient:{patient_id.strip()}\x00{issuer.strip()}".encode("utf-8", "replace")
    return "P" + hmac.new(salt, material, hashlib.sha256).hexdigest()[:16]


@dataclass
class DeidResult:
    """Outcome of de-identifying one data set.

    Attributes:
        report: What was done (keywords only).
        patient_pseudo_id: Pseudonym of the patient, or ``None`` when the data set has no PatientID.
        identifiers: Original identifying strings (names, IDs, birth date) kept in memory only so that the
            caller can check nothing derived from the data set still contains them. Never returned.
    """

    report: DeidReport
    patient_pseudo_id: str | None
    identifiers: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def collect_identifiers(ds: Dataset) -> list[str]:
    """Original patient identifiers of a data set (name and its parts, IDs, birth date)."""
    found: list[str] = []
    name = _text(ds.get("PatientName", ""))
    if name:
        found.append(name)
        found.append(" ".join(p for p in name.replace("^", " ").split() if p))
        found.extend(p for p in name.replace("=", "^").split("^") if len(p.strip()) >= 3)
    for keyword in ("PatientID", "OtherPatientIDs", "PatientBirthName", "PatientMotherBirthName"):
        value = _text(ds.get(keyword, ""))
        if value:
            found.append(value)
            found.extend(v for v in value.split("\\") if v)
    other = _text(ds.get("OtherPatientNames", ""))
    if other:
        found.extend(v for v in other.split("\\") if v)
    birth = _text(ds.get("PatientBirthDate", ""))
    if birth:
        found.append(birth)
    unique: list[str] = []
    for value in found:
        value = value.strip()
        if len(value) >= 3 and value not in unique:
            unique.append(value)
    return unique


def _keep_uid(keyword: str, value: str) -> bool:
    if keyword in _KEEP_UID_KEYWORDS:
        return True
    if keyword.endswith(("ClassUID", "SyntaxUID", "ClassUIDInFile", "SyntaxUIDInFile")):
        return True
    return str(value).startswith(_WELL_KNOWN_ROOT)


class _Walker:
    def __init__(self, profile: Profile, salt: bytes) -> None:
        self.profile = profile
        self.salt = salt
        self.removed: set[str] = set()
        self.emptied: set[str] = set()
        self.replaced: set[str] = set()
        self.private = 0

    def _uids(self, value: Any) -> Any:
        if isinstance(value, MultiValue | list | tuple):
            return [pseudo_uid(v, self.salt) for v in value if str(v).strip()]
        return pseudo_uid(value, self.salt) if str(value or "").strip() else value

    def _remove(self, ds: Dataset, tag: BaseTag, name: str) -> None:
        del ds[tag]
        self.removed.add(name)

    def _empty(self, ds: Dataset, tag: BaseTag, name: str) -> None:
        elem = ds[tag]
        try:
            elem.value = Sequence() if elem.VR == "SQ" else (b"" if elem.VR in ("OB", "OW", "UN") else "")
        except (ValueError, TypeError):
            self._remove(ds, tag, name)
            return
        self.emptied.add(name)

    def _dummy(self, ds: Dataset, tag: BaseTag, name: str) -> None:
        elem = ds[tag]
        if elem.VR == "UI":
            self._uid(ds, tag, name)
            return
        if elem.VR not in _DUMMY or (elem.VM == 0 and elem.VR == "SQ"):
            self._empty(ds, tag, name)
            return
        try:
            elem.value = _DUMMY[elem.VR]
        except (ValueError, TypeError):
            self._remove(ds, tag, name)
            return
        self.replaced.add(name)

    def _uid(self, ds: Dataset, tag: BaseTag, name: str) -> None:
        elem = ds[tag]
        try:
            elem.value = self._uids(elem.value)
        except (ValueError, TypeError):
            self._remove(ds, tag, name)
            return
        self.replaced.add(name)

    def walk(self, ds: Dataset, *, file_meta: bool = False) -> None:
        for tag in list(ds.keys()):
            tag = BaseTag(tag)
            if tag.is_private:
                del ds[tag]
                self.private += 1
                continue
            if file_meta and int(tag) in _META_REMOVE:
                self._remove(ds, tag, ds[tag].keyword or str(tag))
                continue
            rule = self.profile.action_for(int(tag))
            elem = ds[tag]
            name = elem.keyword or str(tag)
            if rule is not None:
                name = rule[0] if not rule[0].startswith("(") else name
                action = rule[1].split("/")[0].rstrip("*")
                if action == "X":
                    self._remove(ds, tag, name)
                    continue
                if action == "Z":
                    self._empty(ds, tag, name)
                    continue
                if action in ("D", "C"):
                    self._dummy(ds, tag, name)
                    continue
                if action == "U":
                    self._uid(ds, tag, name)
                    continue
                # K: keep, and still clean inside sequences below
            if elem.VR == "UI" and rule is None and not _keep_uid(elem.keyword, _text(elem.value)):
                self._uid(ds, tag, name)
                continue
            if elem.VR == "SQ":
                for item in elem.value or []:
                    if isinstance(item, Dataset):
                        self.walk(item)


def deidentify(ds: Dataset, salt: bytes, *, register: bool = True) -> DeidResult:
    """De-identifies a pydicom data set in place with the basic profile.

    Args:
        ds: The data set (its ``file_meta`` is cleaned too).
        salt: Secret salt for pseudonymous UIDs and the patient pseudonym.
        register: Register the original name and IDs with :func:`zebra.logs.register_identifier` so that
            the log filter redacts them should they ever leak into a message.

    Returns:
        The report, the patient pseudonym and (for the caller's residual checks only) the identifiers.
    """
    identifiers = collect_identifiers(ds)
    if register:
        for value in identifiers:
            register_identifier(value)
    patient_id = _text(ds.get("PatientID", "")).strip()
    issuer = _text(ds.get("IssuerOfPatientID", "")).strip()
    pseudo = pseudo_patient_id(patient_id, issuer, salt) if patient_id else None
    burned_in = _text(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"

    walker = _Walker(load_profile(), salt)
    walker.walk(ds)
    meta = getattr(ds, "file_meta", None)
    if isinstance(meta, Dataset):
        walker.walk(meta, file_meta=True)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Zebra: DICOM PS3.15 basic profile"

    report = DeidReport(
        profile=PROFILE_NAME,
        removed=sorted(walker.removed),
        emptied=sorted(walker.emptied),
        replaced=sorted(walker.replaced),
        private_tags_removed=walker.private,
        burned_in_annotation=burned_in,
        method=METHOD,
        datasets=1,
    )
    return DeidResult(report=report, patient_pseudo_id=pseudo, identifiers=identifiers)


def contains_identifier(text: str, identifiers: Iterable[str]) -> bool:
    """Whether ``text`` contains any identifier (case-insensitive)."""
    lowered = text.lower()
    return any(value.lower() in lowered for value in identifiers if len(value) >= 3)
