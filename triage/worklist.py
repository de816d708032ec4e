"""Worklist readers: a CSV file, a DICOM folder tree (grouped by study) or a NOVA-layout data set.

Every reader returns :class:`triage.types.WorkItem` objects in a stable order with stable keys, so that a
resumed run finds the items it inserted before.

CSV (``.csv``, or ``.tsv`` tab-separated); header names are matched case-insensitively, spaces and dashes
read as underscores; columns other than these are ignored:

===========  ================================================================================================
column       accepted header names
===========  ================================================================================================
study        ``study_path``, ``study``, ``path``, ``folder``, ``study_folder``, ``image``, ``image_path``, ``file``
accession    ``accession``, ``accession_number``, ``accessionnumber``, ``acc``, ``acc_no``
prior        ``prior_path``, ``prior``, ``prior_study``, ``prior_folder``, ``previous``, ``comparison``
history      ``history``, ``clinical_history``, ``indication``, ``clinical_notes``, ``notes``, ``reason``
===========  ================================================================================================

Only the study column is required. Relative paths are taken against the CSV file's folder. The key of a row is
``csv-`` + a hash of its accession (or of its study path when there is no accession).

DICOMweb: ``dicomweb:QUERY`` searches the configured server; see :mod:`pacs.source`.

DICOM tree: every regular file under the folder is read with ``pydicom.dcmread(stop_before_pixels=True)``
(files that are not DICOM are skipped) and grouped by StudyInstanceUID; the key is ``dcm-`` + a hash of that
UID. Studies of the same patient are ordered by StudyDate/StudyTime and each gets the previous one as its
prior. No identifier (UID, patient ID, name) is stored or logged: only hashes and the accession number.

NOVA layout: one item per case; a scan whose id ends in ``prior`` is the prior, the last other scan is the
current study. The key is ``nova-`` + the case id; ``meta["clinical_history"]`` is the history.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from triage.errors import WorklistError
from triage.types import WorkItem, short_hash

log = logging.getLogger(__name__)

WorklistKind = Literal["auto", "csv", "dicom", "nova"]

STUDY_HEADERS = ("study_path", "study", "path", "folder", "study_folder", "image", "image_path", "file")
ACCESSION_HEADERS = ("accession", "accession_number", "accessionnumber", "acc", "acc_no")
PRIOR_HEADERS = ("prior_path", "prior", "prior_study", "prior_folder", "previous", "comparison")
HISTORY_HEADERS = ("history", "clinical_history", "indication", "clinical_notes", "notes", "reason")
#: Longest history kept from a worklist (longer text is cut: it is a prompt input, not a report).
MAX_HISTORY_CHARS = 4000
#: Most files a DICOM tree may hold (a guard against pointing the reader at a whole file system).
MAX_DICOM_FILES = 200_000


def read_worklist(path: str | os.PathLike[str], *, kind: WorklistKind = "auto") -> list[WorkItem]:
    """Reads a worklist of any supported kind.

    Args:
        path: A CSV/TSV file, a DICOM folder tree, a NOVA data set (root folder or parquet file), or
            ``dicomweb:QUERY``, a QIDO-RS search on the configured server (:mod:`pacs.source`).
        kind: ``auto`` picks by what ``path`` is: a ``.csv``/``.tsv`` file, a NOVA root (holding
            ``data/nova-v1.parquet``) or ``.parquet`` file, otherwise a folder is a DICOM tree.

    Returns:
        The items, in a stable order.

    Raises:
        WorklistError: When the worklist is missing, empty, malformed or has duplicate keys.
    """
    from pacs.source import is_dicomweb

    if is_dicomweb(str(path)):
        from triage.dicomweb import read_dicomweb_worklist

        items = read_dicomweb_worklist(str(path))
        if not items:
            raise WorklistError(
                "The DICOMweb search found no study.", hint="Check the query (dicomweb:KEY=VALUE&...)."
            )
        return items
    source = Path(path).expanduser()
    if not source.exists():
        raise WorklistError(f"Worklist {source} does not exist.", hint="Check the path.")
    if kind == "auto":
        kind = _detect_kind(source)
    readers = {"csv": read_csv_worklist, "dicom": read_dicom_tree, "nova": read_nova_worklist}
    if kind not in readers:
        raise WorklistError(f"Unknown worklist kind {kind!r}.", hint="Use auto, csv, dicom or nova.")
    items = readers[kind](source)
    if not items:
        raise WorklistError(
            f"Worklist {source} holds no study.",
            hint="Check its content (and --kind when auto-detection guessed wrong).",
        )
    _check_unique(items)
    log.info("worklist (%s) with %d item(s)", kind, len(items))
    return items


def _detect_kind(source: Path) -> str:
    if source.is_file():
        suffix = source.suffix.lower()
        if suffix in (".csv", ".tsv", ".txt"):
            return "csv"
        if suffix == ".parquet":
            return "nova"
        raise WorklistError(
            f"Cannot tell what kind of worklist {source.name} is.",
            hint="Pass a .csv/.tsv file, a NOVA data set or a DICOM folder, or set --kind.",
        )
    if (source / "data" / "nova-v1.parquet").is_file() or (source / "nova-v1.parquet").is_file():
        return "nova"
    return "dicom"


def _check_unique(items: list[WorkItem]) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.item_key in seen:
            raise WorklistError(
                f"Worklist entries {seen[item.item_key] + 1} and {i + 1} are the same study (same key).",
                hint="Remove the duplicate row, or give each row its own accession.",
            )
        seen[item.item_key] = i


# ---------------------------------------------------------------------------------------------------- CSV
def _norm_header(name: str) -> str:
    return name.strip().lstrip("\ufeff").lower().replace(" ", "_").replace("-", "_")


def _pick(headers: dict[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        if name in headers:
            return headers[name]
    return None


def _resolve(base: Path, value: str) -> str:
    path = Path(value.strip()).expanduser()
    return str(path if path.is_absolute() else (base / path))


def read_csv_worklist(path: Path) -> list[WorkItem]:
    """Reads a CSV/TSV worklist (see the module docstring for the columns).

    Raises:
        WorklistError: When the file cannot be read, has no study column, or a row has no study.
    """
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            fieldnames = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WorklistError(
            f"Cannot read the CSV worklist {path.name}: {exc}.",
            hint="Save it as UTF-8 CSV with a header row.",
        ) from exc
    headers = {_norm_header(h): h for h in fieldnames if h}
    study_col = _pick(headers, STUDY_HEADERS)
    if study_col is None:
        raise WorklistError(
            f"The CSV worklist {path.name} has no study column (headers: {', '.join(headers) or 'none'}).",
            hint=f"Name the column of study paths one of: {', '.join(STUDY_HEADERS)}.",
        )
    acc_col = _pick(headers, ACCESSION_HEADERS)
    prior_col = _pick(headers, PRIOR_HEADERS)
    hist_col = _pick(headers, HISTORY_HEADERS)
    base = path.parent
    items: list[WorkItem] = []
    for line, row in enumerate(rows, start=2):
        study = (row.get(study_col) or "").strip()
        if not study:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # blank line
            raise WorklistError(
                f"Row {line} of {path.name} has no study path.", hint="Fill it in or delete the row."
            )
        accession = (row.get(acc_col) or "").strip() if acc_col else ""
        prior = (row.get(prior_col) or "").strip() if prior_col else ""
        history = (row.get(hist_col) or "").strip() if hist_col else ""
        study_path = _resolve(base, study)
        natural = f"acc:{accession}" if accession else f"path:{os.path.normpath(study_path)}"
        items.append(
            WorkItem(
                item_key=f"csv-{short_hash(natural, 20)}",
                accession=accession or None,
                study_path=study_path,
                prior_path=_resolve(base, prior) if prior else None,
                history=history[:MAX_HISTORY_CHARS] or None,
            )
        )
    return items


# ---------------------------------------------------------------------------------------------------- DICOM
_DICOM_TAGS = ("StudyInstanceUID", "AccessionNumber", "PatientID", "StudyDate", "StudyTime")


def _read_header(path: Path) -> dict[str, str] | None:
    """The few header values needed for grouping, or ``None`` when the file is not a readable DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_DICOM_TAGS))
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None
    except Exception:  # pydicom raises assorted errors on hostile headers; a worklist scan must go on
        log.debug("unreadable DICOM header skipped", exc_info=False)
        return None
    uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    if not uid:
        return None
    return {tag: str(ds.get(tag, "") or "").strip() for tag in _DICOM_TAGS}


def _iter_files(root: Path) -> Iterable[Path]:
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = Path(dirpath) / name
            if file.is_symlink() or not file.is_file():
                continue  # links may point out of the tree
            count += 1
            if count > MAX_DICOM_FILES:
                raise WorklistError(
                    f"{root} holds more than {MAX_DICOM_FILES} files.",
                    hint="Point the worklist at the folder of the studies to triage, or use a CSV worklist.",
                )
            yield file


def read_dicom_tree(root: Path, *, pair_priors: bool = True) -> list[WorkItem]:
    """Groups the DICOM files under ``root`` by study (see the module docstring).

    Args:
        root: The folder to walk.
        pair_priors: Give each study the previous study of the same patient as its prior.

    Raises:
        WorklistError: When ``root`` is not a folder or is too large.
    """
    if not root.is_dir():
        raise WorklistError(f"{root} is not a folder.", hint="Pass a folder of DICOM files.")
    studies: dict[str, dict[str, Any]] = {}
    files_by_dir: dict[Path, set[str]] = {}
    for file in _iter_files(root):
        header = _read_header(file)
        if header is None:
            continue
        key = short_hash(f"uid:{header['StudyInstanceUID']}", 20)
        entry = studies.setdefault(
            key,
            {
                "files": [],
                "accession": header["AccessionNumber"],
                # Kept in memory only, hashed: used to pair a study with the patient's previous study.
                "patient": short_hash(f"pid:{header['PatientID']}", 20) if header["PatientID"] else None,
                "when": f"{header['StudyDate']}{header['StudyTime']}",
            },
        )
        entry["files"].append(file)
        files_by_dir.setdefault(file.parent, set()).add(key)
    paths = {key: _study_path(entry["files"], files_by_dir, key) for key, entry in studies.items()}
    priors: dict[str, str] = {}
    if pair_priors:
        by_patient: dict[str, list[str]] = {}
        for key, entry in studies.items():
            if entry["patient"] and entry["when"]:
                by_patient.setdefault(entry["patient"], []).append(key)
        for keys in by_patient.values():
            keys.sort(key=lambda k: (studies[k]["when"], k))
            for earlier, later in itertools.pairwise(keys):
                priors[later] = earlier
    order = sorted(studies, key=lambda k: (min(str(f) for f in studies[k]["files"]), k))
    return [
        WorkItem(
            item_key=f"dcm-{key}",
            accession=studies[key]["accession"] or None,
            study_path=paths[key],
            prior_path=paths[priors[key]] if key in priors else None,
        )
        for key in order
    ]


def _study_path(files: list[Path], files_by_dir: dict[Path, set[str]], key: str) -> str:
    """The study's folder when it holds this study only, else a JSON list of its files."""
    folders = {f.parent for f in files}
    if len(folders) == 1:
        folder = next(iter(folders))
        if files_by_dir.get(folder) == {key}:
            return str(folder)
    return json.dumps(sorted(str(f) for f in files))


# ---------------------------------------------------------------------------------------------------- NOVA
def read_nova_worklist(path: Path) -> list[WorkItem]:
    """One item per case of a NOVA-layout data set (see the module docstring).

    Raises:
        WorklistError: When the data set cannot be read.
    """
    from zebra.errors import DatasetError
    from zebra_datasets import read_nova

    try:
        dataset = read_nova(path)
    except WorklistError:
        raise
    except DatasetError as exc:
        raise WorklistError(exc.message, hint=exc.hint) from exc
    items: list[WorkItem] = []
    for case_id, records in dataset.by_case().items():
        scans: dict[str, list[Any]] = {}
        for record in records:
            scans.setdefault(record.scan_id or case_id, []).append(record)
        prior_ids = [s for s in scans if s.lower().rstrip("_- ").endswith("prior")]
        current_ids = [s for s in scans if s not in prior_ids]
        if not current_ids:
            current_ids, prior_ids = prior_ids[-1:], prior_ids[:-1]
        current = scans[current_ids[-1]][0]
        prior = scans[prior_ids[-1]][0] if prior_ids else None
        history = current.clinical_history.strip()
        items.append(
            WorkItem(
                item_key=f"nova-{case_id}",
                accession=str(case_id),
                study_path=_image_path(dataset, current),
                prior_path=_image_path(dataset, prior) if prior is not None else None,
                history=history[:MAX_HISTORY_CHARS] or None,
            )
        )
    return items


def _image_path(dataset: Any, record: Any) -> str:
    """The record's image file; a missing one becomes that item's error at processing, not the worklist's."""
    from zebra.errors import DatasetError

    try:
        return str(dataset.resolve_image(record))
    except DatasetError:
        # Never the stored relative path itself: it may climb out of the data set root.
        name = Path(record.image_path or record.filename or "image").name
        return str(dataset.root / "missing" / name)
