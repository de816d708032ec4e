"""A DICOMweb search (``dicomweb:QUERY``) as a triage worklist: one work item per study, each paired with the
patient's previous study as its prior. The search itself is :mod:`pacs`'s; this module turns its records into
:class:`triage.types.WorkItem` objects, so that :mod:`pacs` never needs to know about triage.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from pacs.client import DicomwebClient
from pacs.source import PREFIX, parse_query, record_value
from triage.types import WorkItem, short_hash

log = logging.getLogger(__name__)


def read_dicomweb_worklist(
    worklist: str, *, client: Any | None = None, pair_priors: bool = True
) -> list[Any]:
    """The studies a ``dicomweb:QUERY`` finds, as work items (see the module docstring).

    Args:
        worklist: ``dicomweb:`` followed by a QIDO-RS query string (may be empty: every study).
        client: A :class:`pacs.client.DicomwebClient` (default: from the settings).
        pair_priors: Give each study the patient's previous study as its prior.

    Raises:
        DicomwebQueryError, DicomwebNotConfiguredError: Bad query or no server.
        DicomwebAuthError, DicomwebUnreachableError, DicomwebError: When the search fails.
    """
    filters, limit = parse_query(worklist)
    client = client or DicomwebClient.from_settings()
    records = client.search_studies(filters, limit=limit)
    studies: dict[str, dict[str, Any]] = {}
    for record in records:
        uid = record_value(record, "StudyInstanceUID")
        if not uid or uid in studies:
            continue
        pid = record_value(record, "PatientID")
        studies[uid] = {
            "accession": record_value(record, "AccessionNumber") or None,
            # Kept in memory only, hashed: pairs a study with the patient's previous study.
            "patient": short_hash(f"pid:{pid}", 20) if pid else None,
            "when": f"{record_value(record, 'StudyDate')}{record_value(record, 'StudyTime')}",
        }
    priors: dict[str, str] = {}
    if pair_priors:
        by_patient: dict[str, list[str]] = {}
        for uid, entry in studies.items():
            if entry["patient"] and entry["when"]:
                by_patient.setdefault(entry["patient"], []).append(uid)
        for uids in by_patient.values():
            uids.sort(key=lambda u: (studies[u]["when"], short_hash(u)))
            for earlier, later in itertools.pairwise(uids):
                priors[later] = earlier
    # Stable order whatever order the server answers in: by study date/time, then by hashed UID.
    order = sorted(studies, key=lambda u: (studies[u]["when"], short_hash(u)))
    items = [
        WorkItem(
            item_key=f"dicomweb-{short_hash(f'uid:{uid}', 20)}",
            accession=studies[uid]["accession"],
            study_path=f"{PREFIX}{uid}",
            prior_path=f"{PREFIX}{priors[uid]}" if uid in priors else None,
        )
        for uid in order
    ]
    log.info("DICOMweb search found %d stud%s", len(items), "y" if len(items) == 1 else "ies")
    return items
