"""Open from PACS: one study fetched server-side from the operator's DICOMweb server, then read like an upload.

A user names a study by accession number or StudyInstanceUID, never by server: the server, its URL and its
credentials are the operator's ``[dicomweb]`` settings (:mod:`pacs.client`). The value is checked here before
anything is asked (exact match only: no wildcards, ranges or lists), the study's raw instances are written into
the request's private upload folder (:func:`pacs.source.fetch_study_files`), and the route hands that folder to
the same isolated intake, de-identification, quota and storage as an upload.

What went wrong with the PACS is logged (the error's kind and its message, which never names the server, a
credential or a UID); the user gets a generic 503. The user's value is never logged or echoed: an accession
number identifies a patient's examination.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zebra.config import Settings
from zebra_web.errors import (
    BadRequestError,
    ConflictError,
    PacsUnavailableError,
    ResourceNotFoundError,
)
from zebra_web.redact import mask_secrets

log = logging.getLogger(__name__)

#: Longest accession number (DICOM SH) and UID (DICOM UI).
ACCESSION_MAX = 16
UID_MAX = 64
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
#: Characters that would turn an exact match into a search (wildcards, lists) or a new query term.
_NOT_IN_ACCESSION = frozenset("*?\\,=&")


@dataclass(frozen=True)
class PacsReference:
    """A validated study reference: exactly one of the two is set."""

    accession: str | None = None
    study_uid: str | None = None

    @property
    def kind(self) -> str:
        """What the user gave, in words (for messages that never quote the value)."""
        return "accession number" if self.accession is not None else "Study UID"


def parse_reference(accession: str | None, study_uid: str | None) -> PacsReference:
    """Checks a user's study reference.

    Args:
        accession: An accession number: 1 to 16 printable ASCII characters, none of ``* ? \\ , = &``.
        study_uid: A StudyInstanceUID: up to 64 digits and dots (at least two components, no empty one).

    Raises:
        BadRequestError: Neither or both given, or a malformed value (the message never quotes it).
    """
    accession = accession.strip() if isinstance(accession, str) else None
    study_uid = study_uid.strip() if isinstance(study_uid, str) else None
    accession, study_uid = accession or None, study_uid or None
    if (accession is None) == (study_uid is None):
        raise BadRequestError(
            "Give either an accession number or a Study UID.", hint='E.g. {"accession": "A12345"}.'
        )
    if study_uid is not None:
        if len(study_uid) > UID_MAX or not _UID.fullmatch(study_uid):
            raise BadRequestError(
                "That is not a Study UID.",
                hint=f"A Study UID is up to {UID_MAX} digits and dots, e.g. 1.2.840.1.",
            )
        return PacsReference(study_uid=study_uid)
    assert accession is not None
    if (
        len(accession) > ACCESSION_MAX
        or any(not (" " <= c <= "~") for c in accession)
        or any(c in _NOT_IN_ACCESSION for c in accession)
    ):
        raise BadRequestError(
            "That is not an accession number.",
            hint=f"Up to {ACCESSION_MAX} letters, digits and punctuation, without wildcards (* ?) or , \\ = &.",
        )
    return PacsReference(accession=accession)


def is_configured(settings: Settings) -> bool:
    """Whether the operator configured a DICOMweb server (``[dicomweb] url``)."""
    return bool((settings.dicomweb.url or "").strip())


def make_client(settings: Settings) -> Any:
    """The client of the operator's server (a seam for tests, which stub the PACS here).

    Raises:
        DicomwebNotConfiguredError: No URL, or one that is not http(s).
    """
    from pacs.client import DicomwebClient

    return DicomwebClient.from_settings(settings)


def fetch_into(
    settings: Settings, ref: PacsReference, folder: Path, *, max_files: int, max_bytes: int
) -> tuple[int, int]:
    """Fetches the study ``ref`` names into ``folder`` (raw instances; blocking: call from a worker thread).

    Returns:
        (files, bytes) written.

    Raises:
        ResourceNotFoundError: No study on the PACS matches (404).
        ConflictError: Several studies have this accession number (409).
        PayloadTooLargeError: The study is over the upload limits (413).
        BadRequestError: The PACS layer refused the value (400).
        PacsUnavailableError: The PACS is unreachable, refused the credentials, failed or is misconfigured
            (503, generic; the details go to the log).
    """
    from pacs.errors import (
        DicomwebAmbiguousError,
        DicomwebQueryError,
        DicomwebStudyGoneError,
    )
    from pacs.source import fetch_study_files
    from zebra.errors import LimitExceededError, ZebraError
    from zebra_web.errors import PayloadTooLargeError

    try:
        client = make_client(settings)
        return fetch_study_files(
            folder,
            accession=ref.accession,
            study_uid=ref.study_uid,
            client=client,
            max_files=max_files,
            max_bytes=max_bytes,
        )
    except DicomwebStudyGoneError:
        raise ResourceNotFoundError(
            f"No study on the PACS has this {ref.kind}.",
            hint="Check it: it must match exactly (no wildcards).",
        ) from None
    except DicomwebAmbiguousError:
        raise ConflictError(
            "Several studies on the PACS have this accession number.", hint="Open the study by its Study UID."
        ) from None
    except DicomwebQueryError:
        raise BadRequestError(
            f"That {ref.kind} cannot be looked up.", hint="Check it and try again."
        ) from None
    except LimitExceededError as exc:
        raise PayloadTooLargeError(exc.message, hint=exc.hint) from None
    except Exception as exc:  # unreachable, credentials refused, server failure, bad settings, library bug
        # Zebra's DICOMweb errors never name the server, a credential or a UID; other exceptions may: kind only.
        detail = mask_secrets(exc.message) if isinstance(exc, ZebraError) else ""
        log.warning("open from PACS failed: %s%s", type(exc).__name__, f": {detail}" if detail else "")
        raise PacsUnavailableError(
            "The PACS could not be reached.",
            hint="Try again later; if it persists, tell the administrator (the server log has the details).",
        ) from None
