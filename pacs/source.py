"""``dicomweb:QUERY`` worklists, and fetching a study into the hardened intake when its lease is taken.

A worklist ``dicomweb:ModalitiesInStudy=MR&StudyDate=20260101-`` is a QIDO-RS study search on the
configured server (the query string is passed as search filters; ``limit=N`` caps the studies);
:func:`triage.dicomweb.read_dicomweb_worklist` makes each study a :class:`triage.types.WorkItem` whose key is ``dicomweb-`` + a hash of its StudyInstanceUID and
whose study path is ``dicomweb:<StudyInstanceUID>``: the original UID stays in the triage run's private
state (the store), which is what lets results be written back next to the images; it is never logged.
Studies of the same patient (hashed) are paired with the previous one as their prior, as for DICOM trees.

:func:`load_study` fetches the study's instances with WADO-RS as raw bytes into a private temporary folder
and reads it with :func:`zebra_intake.load_study`, so intake's checks and PS3.15 de-identification apply
exactly as for files (an object intake refuses fails the item like a bad upload). The raw instances of the
last few studies stay in this process's memory for the write-back (:func:`fetched`), never on disk.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from pacs.errors import DicomwebQueryError

log = logging.getLogger(__name__)

PREFIX = "dicomweb:"
#: Fetched studies kept in memory per process (the current study and its prior).
_CACHE_SIZE = 2
#: QIDO-RS query parameters that are not attribute filters.
_PARAMS = frozenset({"limit", "offset", "fuzzymatching", "includefield"})


def is_dicomweb(value: Any) -> bool:
    """Whether a worklist argument or a study path names the DICOMweb source."""
    return isinstance(value, str) and value.startswith(PREFIX)


def parse_query(worklist: str) -> tuple[dict[str, str], int | None]:
    """``dicomweb:QUERY`` -> (QIDO-RS search filters, limit).

    Raises:
        DicomwebQueryError: For an unknown attribute, a repeated one or a bad limit.
    """
    from pydicom.datadict import tag_for_keyword

    query = worklist[len(PREFIX) :] if is_dicomweb(worklist) else worklist
    filters: dict[str, str] = {}
    limit: int | None = None
    for key, value in parse_qsl(query.lstrip("?"), keep_blank_values=True, strict_parsing=False):
        key = key.strip()
        if key.lower() == "limit":
            if not value.isdigit() or int(value) < 1:
                raise DicomwebQueryError(
                    f"limit must be a positive integer, got {value!r}.", hint="e.g. dicomweb:limit=50"
                )
            limit = int(value)
            continue
        if key.lower() in _PARAMS:
            raise DicomwebQueryError(f"{key} is not supported in a worklist query.", hint="Remove it.")
        is_tag = len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key)
        if not is_tag and tag_for_keyword(key) is None:
            raise DicomwebQueryError(
                f"{key!r} is not a DICOM attribute keyword.",
                hint="Use keywords such as ModalitiesInStudy, StudyDate, AccessionNumber, StudyInstanceUID.",
            )
        if key in filters:
            raise DicomwebQueryError(f"{key} is given twice in the query.", hint="Give it once.")
        filters[key] = value
    return filters, limit


def record_value(record: dict[str, Any], keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    element = record.get(f"{tag:08X}") if tag is not None else None
    values = (element or {}).get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # PN
        first = first.get("Alphabetic", "")
    return str(first).strip()


# ---------------------------------------------------------------------------------------------------- fetch
@dataclass
class FetchedStudy:
    """A study as fetched (raw instances, in memory) and as intake read it (de-identified).

    Attributes:
        study_uid: The original StudyInstanceUID (private to this process).
        parts: The raw Part 10 bytes of each instance; intake read them as ``000000.dcm``, ``000001.dcm`` ...
        study: The de-identified :class:`zebra_intake.Study`.
    """

    study_uid: str
    parts: list[bytes]
    study: Any

    def original_dataset(self, image: Any, *, pixels: bool = False) -> Any:
        """The original pydicom data set behind a ``MedicalImage`` of :attr:`study` (header only unless
        ``pixels``: the results need the image's identity and geometry, not its pixels).

        Raises:
            KeyError: When the image was not read from one of :attr:`parts`.
        """
        import io

        import pydicom

        stem = Path(getattr(image, "source_name", "") or "").stem
        if not stem.isdigit() or int(stem) >= len(self.parts):
            raise KeyError("image not from this study's instances")
        return pydicom.dcmread(io.BytesIO(self.parts[int(stem)]), stop_before_pixels=not pixels)


_fetched: OrderedDict[str, FetchedStudy] = OrderedDict()


def study_uid_of(study_path: str) -> str:
    """The StudyInstanceUID of a ``dicomweb:<uid>`` study path.

    Raises:
        DicomwebQueryError: When the path holds no plausible UID.
    """
    uid = study_path[len(PREFIX) :].strip() if is_dicomweb(study_path) else ""
    if not uid or len(uid) > 64 or any(c not in "0123456789." for c in uid):
        raise DicomwebQueryError("A DICOMweb study reference is malformed.", hint="Re-create the run.")
    return uid


def load_study(study_path: str, *, client: Any | None = None) -> Any:
    """Fetches ``dicomweb:<uid>`` with WADO-RS and reads it through intake (module docstring).

    Returns:
        The de-identified :class:`zebra_intake.Study`.

    Raises:
        DicomwebStudyGoneError: The study is not on the server any more.
        DicomwebAuthError, DicomwebUnreachableError, DicomwebError: The fetch failed after its retries.
        IntakeError: Intake refused what the server sent.
    """
    from zebra_intake import load_study as intake_load

    uid = study_uid_of(study_path)
    client = client or default_client()
    parts = client.fetch_study(uid)
    tmp = Path(tempfile.mkdtemp(prefix="zebra-dicomweb-"))
    try:
        _write_parts(parts, tmp)
        study = intake_load(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fetched[study_path] = FetchedStudy(study_uid=uid, parts=parts, study=study)
    _fetched.move_to_end(study_path)
    while len(_fetched) > _CACHE_SIZE:
        _fetched.popitem(last=False)
    return study


def _write_parts(parts: list[bytes], folder: Path) -> tuple[int, int]:
    """Writes the instances as ``000000.dcm`` ... into ``folder``, leaving out Zebra's earlier results in the
    same study (an SR or map is not an input). Returns (files, bytes) written."""
    files = n_bytes = 0
    for i, part in enumerate(parts):
        if not _is_own_result(part):
            (folder / f"{i:06d}.dcm").write_bytes(part)
            files, n_bytes = files + 1, n_bytes + len(part)
    return files, n_bytes


def _is_own_result(part: bytes) -> bool:
    """Whether an instance is a result Zebra wrote (its manufacturer and SR / map SOP classes); a header
    that cannot be read is left to intake to judge."""
    import io

    import pydicom

    from pacs.results import MANUFACTURER, RESULT_SOP_CLASSES

    try:
        ds = pydicom.dcmread(
            io.BytesIO(part), stop_before_pixels=True, specific_tags=["Manufacturer", "SOPClassUID"]
        )
    except Exception:  # hostile bytes: intake decides and reports
        return False
    return (
        str(ds.get("Manufacturer", "")) == MANUFACTURER
        and str(ds.get("SOPClassUID", "")) in RESULT_SOP_CLASSES
    )


def fetched(study_path: str) -> FetchedStudy | None:
    """The study this process fetched last for ``study_path`` (``None`` when it was not fetched here)."""
    return _fetched.get(study_path)


def forget(study_path: str) -> None:
    """Drops a fetched study from memory."""
    _fetched.pop(study_path, None)


_client: tuple[int, Any] | None = None


def default_client() -> Any:
    """One client per process and settings (its HTTP session keeps connections open between studies)."""
    global _client
    from zebra.config import get_settings

    settings = get_settings()
    if _client is None or _client[0] != id(settings):
        from pacs.client import DicomwebClient

        _client = (id(settings), DicomwebClient.from_settings(settings))
    return _client[1]


def reset_client() -> None:
    """Forgets the process's client (tests change the settings between runs)."""
    global _client
    _client = None
    _fetched.clear()


# ---------------------------------------------------------------------------------------------------- open one
def find_study(
    *, study_uid: str | None = None, accession: str | None = None, client: Any | None = None
) -> str:
    """The StudyInstanceUID of the one study on the configured server with this UID or accession number.

    The value comes from a user, so it is matched exactly: wildcards, ranges and multiple values are
    refused, and the server is always the operator's (never one a user names). The UID returned is the
    original one: keep it private (never log it or show it).

    Raises:
        DicomwebQueryError: Neither or both given, or a malformed value.
        DicomwebStudyGoneError: No such study on the server.
        DicomwebAmbiguousError: Several studies match.
        DicomwebError: The server failed.
    """
    from pacs.errors import DicomwebAmbiguousError, DicomwebStudyGoneError

    if (study_uid is None) == (accession is None):
        raise DicomwebQueryError("Give a StudyInstanceUID or an accession number.", hint="One of the two.")
    if study_uid is not None:
        key, value = "StudyInstanceUID", study_uid_of(f"{PREFIX}{study_uid.strip()}")
    else:
        value = (accession or "").strip()
        if not value or len(value) > 16 or any(c in value for c in "*?\\,=&") or not value.isprintable():
            raise DicomwebQueryError(
                "An accession number is up to 16 plain characters.", hint="Without wildcards or ranges."
            )
        key = "AccessionNumber"
    client = client or default_client()
    records = client.search_studies({key: value}, limit=2)
    uids = {u for u in (record_value(r, "StudyInstanceUID") for r in records) if u}
    if not uids:
        raise DicomwebStudyGoneError("No study on the PACS matches.", hint="Check the number.")
    if len(uids) > 1:
        raise DicomwebAmbiguousError(
            "Several studies on the PACS have this accession number.", hint="Open it by StudyInstanceUID."
        )
    return uids.pop()


def fetch_study_files(
    folder: Path,
    *,
    study_uid: str | None = None,
    accession: str | None = None,
    client: Any | None = None,
    max_files: int | None = None,
    max_bytes: int | None = None,
) -> tuple[int, int]:
    """Finds one study (:func:`find_study`) and writes its raw instances into ``folder`` for an intake that
    runs elsewhere (the web server parses in a child process with a timeout, as it does uploads).

    The files are raw, not de-identified: ``folder`` must be private and removed once intake has read it.
    The limits are checked before anything is written.

    Returns:
        (files, bytes) written.

    Raises:
        LimitExceededError: The study has more instances or bytes than allowed.
        DicomwebQueryError, DicomwebStudyGoneError, DicomwebAmbiguousError, DicomwebError: As
            :func:`find_study` and the fetch raise them.
    """
    from zebra.errors import LimitExceededError

    client = client or default_client()
    uid = find_study(study_uid=study_uid, accession=accession, client=client)
    parts = client.fetch_study(uid)
    if max_files is not None and len(parts) > max_files:
        raise LimitExceededError(
            f"The study has more than {max_files} instances.",
            hint="Ask the administrator to raise the limit.",
        )
    if max_bytes is not None and sum(len(p) for p in parts) > max_bytes:
        raise LimitExceededError(
            f"The study is larger than {max_bytes / 2**20:.0f} MiB.",
            hint="Ask the administrator to raise the limit.",
        )
    return _write_parts(parts, Path(folder))


def open_study(
    *, study_uid: str | None = None, accession: str | None = None, client: Any | None = None
) -> Any:
    """Fetches one study from the configured server by StudyInstanceUID or accession number and reads it
    through intake (de-identified), for a front end's "Open from PACS" (matched as :func:`find_study`).

    Returns:
        The de-identified :class:`zebra_intake.Study`.

    Raises:
        DicomwebQueryError: Neither or both given, or a malformed value.
        DicomwebStudyGoneError: No such study on the server. DicomwebAmbiguousError: Several studies match.
        DicomwebError: The server failed.
        IntakeError: Intake refused what the server sent.
    """
    client = client or default_client()
    path = f"{PREFIX}{find_study(study_uid=study_uid, accession=accession, client=client)}"
    try:
        return load_study(path, client=client)
    finally:
        forget(path)
