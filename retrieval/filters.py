"""Metadata filters on chunks and images.

A :class:`Filters` value restricts a search to rows whose metadata match. Each field accepts one value or
several (any of them may match); ``None`` means no restriction. Matching is case-insensitive:

- ``source`` and ``kind`` must equal the row's value.
- ``modality`` and ``body_region`` match as whole words inside the row's value, after mapping common
  aliases (``MRI`` -> ``MR``, ``computed tomography`` -> ``CT``, ``x-ray`` -> ``XR`` ...), so ``CT`` matches
  ``"CT - noncontrast"`` and ``"CT, MR"`` but not ``"OCT"``.
- ``has_diagnosis``: ``True`` keeps rows with a diagnosis label, ``False`` rows without one.
- ``exclude_diagnoses``: rows whose diagnosis label equals one of these (case and spacing folded) are dropped;
  the "unseen disease" evaluation hides every document of the case's own disease this way
  (:class:`retrieval.hidden.HiddenSearcher`).
- ``exclude_doc_ids`` / ``exclude_case_ids``: rows whose ``doc_id`` / ``case_id`` is one of these are dropped
  (a case's own documents and images, whatever their label).

The searcher applies filters by over-fetching: it asks the indexes for more candidates than needed and keeps the
matching ones, growing the candidate pool until enough matches are found or the index is exhausted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

_MODALITY_ALIASES = {
    "mri": "mr",
    "magnetic resonance": "mr",
    "magnetic resonance imaging": "mr",
    "computed tomography": "ct",
    "cat": "ct",
    "x ray": "xr",
    "xray": "xr",
    "radiograph": "xr",
    "radiography": "xr",
    "plain film": "xr",
    "ultrasound": "us",
    "sonography": "us",
    "ultrasonography": "us",
    "mammography": "mg",
    "mammogram": "mg",
}


def _norm_text(value: str) -> str:
    text = re.sub(r"[^0-9a-z]+", " ", str(value).lower()).strip()
    for alias, canonical in sorted(_MODALITY_ALIASES.items(), key=lambda kv: -len(kv[0])):
        text = re.sub(rf"\b{re.escape(alias)}\b", canonical, text)
    return text


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    cleaned = tuple(v.strip() for v in value if v and v.strip())
    return cleaned or None


@dataclass(frozen=True)
class Filters:
    """Metadata restrictions for a search; see the module docstring for the matching rules.

    Attributes:
        modality: Modality or modalities (``"CT"``, ``"MR"`` ...).
        body_region: Body region(s) (``"head"``, ``"chest"`` ...).
        source: Source name(s) (``"medpix"``, ``"hpo"`` ...).
        kind: Document kind(s) (``"case_report"``, ``"disease_discussion"`` ...).
        has_diagnosis: Keep only rows with (``True``) or without (``False``) a diagnosis label.
        exclude_diagnoses: Diagnosis labels whose rows are dropped (exact labels, case and spacing folded).
        exclude_doc_ids: Documents whose rows are dropped.
        exclude_case_ids: Cases whose rows (images, with a ``case_id`` column) are dropped.
    """

    modality: str | tuple[str, ...] | None = None
    body_region: str | tuple[str, ...] | None = None
    source: str | tuple[str, ...] | None = None
    kind: str | tuple[str, ...] | None = None
    has_diagnosis: bool | None = None
    exclude_diagnoses: tuple[str, ...] | None = None
    exclude_doc_ids: tuple[str, ...] | None = None
    exclude_case_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("modality", "body_region", "source", "kind"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        excluded = _as_tuple(self.exclude_diagnoses)
        # sorted and folded: equal sets give equal (hashable) filters, so the mask caches hit
        folded = tuple(sorted({fold_label(v) for v in excluded})) if excluded else None
        object.__setattr__(self, "exclude_diagnoses", folded)
        for name in ("exclude_doc_ids", "exclude_case_ids"):
            ids = _as_tuple(getattr(self, name))
            object.__setattr__(self, name, tuple(sorted(set(ids))) if ids else None)

    @property
    def active(self) -> bool:
        """Whether any restriction is set."""
        return any(getattr(self, f.name) is not None for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of the set restrictions."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows of ``frame`` that pass; columns that are missing never match a set field.

        Args:
            frame: Chunks or images table with (some of) the columns ``modality``, ``body_region``,
                ``source``, ``kind``, ``diagnosis``.
        """
        keep = np.ones(len(frame), dtype=bool)
        for name in ("source", "kind"):
            wanted = getattr(self, name)
            if wanted is None:
                continue
            if name not in frame.columns:
                return np.zeros(len(frame), dtype=bool)
            targets = {w.lower() for w in wanted}
            column = frame[name].fillna("").astype(str).str.lower()
            keep &= column.isin(targets).to_numpy()
        for name in ("modality", "body_region"):
            wanted = getattr(self, name)
            if wanted is None:
                continue
            if name not in frame.columns:
                return np.zeros(len(frame), dtype=bool)
            keep &= _word_match(frame[name], wanted)
        if self.has_diagnosis is not None:
            if "diagnosis" in frame.columns:
                present = frame["diagnosis"].fillna("").astype(str).str.strip().ne("").to_numpy()
            else:
                present = np.zeros(len(frame), dtype=bool)
            keep &= present if self.has_diagnosis else ~present
        if self.exclude_diagnoses is not None and "diagnosis" in frame.columns:
            labels = frame["diagnosis"].fillna("").astype(str).map(fold_label)
            keep &= ~labels.isin(set(self.exclude_diagnoses)).to_numpy()
        for name, column in (("exclude_doc_ids", "doc_id"), ("exclude_case_ids", "case_id")):
            ids = getattr(self, name)
            if ids is not None and column in frame.columns:
                keep &= ~frame[column].fillna("").astype(str).isin(set(ids)).to_numpy()
        return keep

    def matches(self, row: dict[str, Any]) -> bool:
        """Whether one row (a mapping of column to value) passes."""
        return bool(self.mask(pd.DataFrame([row]))[0])


def fold_label(label: str) -> str:
    """A diagnosis label with case and runs of white space folded (``" Moyamoya  Disease"`` -> ``"moyamoya disease"``)."""
    return " ".join(str(label).lower().split())


def _word_match(column: pd.Series, wanted: Iterable[str]) -> np.ndarray:
    """Rows whose normalised value contains one of ``wanted`` as whole words."""
    values = column.fillna("").astype(str).map(_norm_text)
    patterns = [rf"\b{re.escape(_norm_text(w))}\b" for w in wanted if _norm_text(w)]
    if not patterns:
        return np.zeros(len(column), dtype=bool)
    regex = "|".join(patterns)
    return values.str.contains(regex, regex=True).to_numpy()
