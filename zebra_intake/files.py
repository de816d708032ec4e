"""Finding the files of a study: folders, DICOMDIR file-sets, with no escape from the root.

DICOMDIR references are resolved by Zebra itself rather than by pydicom's ``FileSet`` (whose path handling
was the subject of CVE-2026-32711): each Referenced File ID component must be a plain name, and the
resolved path (symlinks followed) must stay inside the DICOMDIR's folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pydicom.dataset import Dataset

from zebra.config import IntakeSettings
from zebra.errors import LimitExceededError, UnsafeFileError
from zebra_intake.guard import contained, safe_component

_SKIP_DIRS = {"__MACOSX", "$RECYCLE.BIN", "System Volume Information"}


def find_dicomdir(root: Path) -> Path | None:
    """A file named DICOMDIR (any case) at the root or one level below, shallowest first."""
    levels = [[root], sorted(p for p in _safe_iterdir(root) if p.is_dir() and not p.is_symlink())]
    for level in levels:
        for folder in level:
            for entry in sorted(_safe_iterdir(folder)):
                if entry.name.upper() == "DICOMDIR" and entry.is_file():
                    return entry
    return None


def _safe_iterdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def walk_files(root: Path, settings: IntakeSettings) -> Iterator[Path]:
    """Regular files under ``root`` (sorted, hidden files skipped), refusing links that leave it.

    Raises:
        UnsafeFileError: When a symlink points outside ``root``.
        LimitExceededError: When there are more than ``settings.max_files`` files.
    """
    count = 0
    for current, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        for filename in sorted(files):
            if filename.startswith("."):
                continue
            path = Path(current) / filename
            if path.is_symlink():
                path = contained(root, path)
            if not path.is_file():
                continue
            count += 1
            if count > settings.max_files:
                raise LimitExceededError(
                    f"The folder holds more than {settings.max_files} files.",
                    hint="Pass one study at a time, or raise intake.max_files (ZEBRA_INTAKE__MAX_FILES).",
                )
            yield path


def _file_id_parts(value: object) -> list[str]:
    if isinstance(value, str):
        return [p for p in value.replace("\\", "/").split("/")] if value else []
    try:
        items = [str(v) for v in value]  # type: ignore[attr-defined]
    except TypeError:
        items = [str(value)]
    return items


def _match_case(folder: Path, name: str) -> Path:
    """``folder / name``, or a case-insensitive match (media written on case-insensitive systems)."""
    exact = folder / name
    if exact.exists():
        return exact
    for entry in _safe_iterdir(folder):
        if entry.name.upper() == name.upper():
            return entry
    return exact


def dicomdir_references(dicomdir: Path, ds: Dataset, settings: IntakeSettings) -> tuple[list[Path], int]:
    """Files referenced by a DICOMDIR's directory records, confined to the DICOMDIR's folder.

    Returns:
        The referenced files that exist (sorted, unique) and how many references were missing.

    Raises:
        UnsafeFileError: When a Referenced File ID is absolute, contains ``..`` or separators, or
            resolves (through symlinks) outside the DICOMDIR's folder.
        LimitExceededError: When more than ``settings.max_files`` files are referenced.
    """
    root = dicomdir.parent
    found: dict[Path, None] = {}
    missing = 0
    for record in ds.get("DirectoryRecordSequence") or []:
        if "ReferencedFileID" not in record:
            continue
        parts = [p.strip() for p in _file_id_parts(record["ReferencedFileID"].value)]
        parts = [p for p in parts if p]
        if not parts:
            continue
        if not all(safe_component(p) for p in parts):
            raise UnsafeFileError(
                "The DICOMDIR references a file outside its folder (absolute path or '..').",
                hint="Refusing the whole file-set; re-create the DICOMDIR or pass the image folder.",
            )
        candidate = root
        for part in parts:
            candidate = _match_case(candidate, part)
        resolved = contained(root, candidate)
        if not resolved.is_file():
            missing += 1
            continue
        found[resolved] = None
        if len(found) > settings.max_files:
            raise LimitExceededError(
                f"The DICOMDIR references more than {settings.max_files} files.",
                hint="Raise intake.max_files (ZEBRA_INTAKE__MAX_FILES) if the file-set is trusted.",
            )
    return sorted(found), missing
