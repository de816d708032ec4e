"""A searcher that never returns some documents and images: the "unseen disease" setting.

To measure how the product does on a disease that is in no document of the knowledge base, the evaluation
(``zebra eval nova --unseen``, ``zebra agent eval --unseen``) hides, per case, every chunk and image whose
diagnosis label the judge matches to the case's gold diagnosis (its case reports, its disease discussion, its
phenotype profiles, the images of its cases) and every document linked to the case itself, whatever its label
(MedPix attaches each case to a topic discussion that may be titled otherwise: "Dentigerous cyst" for an
odontogenic keratocyst). :class:`HiddenSearcher` wraps a :class:`retrieval.searcher.Searcher` and adds
``Filters(exclude_...)`` to every search, so the searcher's own over-fetching keeps ``k`` results and nothing
hidden can reach a caller (the agent's candidates come only from search results). Everything else is delegated
to the wrapped searcher.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from retrieval.filters import Filters, fold_label

#: The search methods whose results are filtered.
SEARCH_METHODS = ("search_text", "search_image", "search_text_to_image", "search_image_to_text", "diagnose")


@dataclass(frozen=True)
class Hidden:
    """What one run must not see.

    Attributes:
        labels: Diagnosis labels (case and spacing folded when matched).
        doc_ids: Documents, whatever their label.
        case_ids: Cases whose images are hidden, whatever their label.
    """

    labels: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()
    case_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.labels or self.doc_ids or self.case_ids)

    @property
    def filters(self) -> Filters:
        """The exclusion filters."""
        return Filters(
            exclude_diagnoses=self.labels or None,
            exclude_doc_ids=self.doc_ids or None,
            exclude_case_ids=self.case_ids or None,
        )


def diagnosis_labels(searcher: Any) -> list[str]:
    """Distinct diagnosis labels of a searcher's chunks and images (non-empty, as stored)."""
    labels: set[str] = set()
    for frame in (getattr(searcher, "chunks", None), getattr(searcher, "images", None)):
        if isinstance(frame, pd.DataFrame) and "diagnosis" in frame.columns:
            labels.update(str(v) for v in frame["diagnosis"].dropna().astype(str) if v.strip())
    return sorted(labels)


def _meta(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) and value else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def documents_of_cases(searcher: Any) -> dict[str, set[str]]:
    """Case id -> documents linked to it by their metadata (``case_id`` or ``case_ids``)."""
    out: dict[str, set[str]] = {}
    chunks = getattr(searcher, "chunks", None)
    if not isinstance(chunks, pd.DataFrame) or "meta" not in chunks.columns:
        return out
    for doc_id, meta in chunks.drop_duplicates("doc_id")[["doc_id", "meta"]].itertuples(index=False):
        m = _meta(meta)
        ids = [m.get("case_id"), *(m.get("case_ids") or [])]
        for case_id in ids:
            if case_id:
                out.setdefault(str(case_id), set()).add(str(doc_id))
    return out


class HiddenSearcher:
    """A searcher view without some documents and images (module docstring).

    Args:
        searcher: The searcher to wrap.
        hidden: What to hide (a :class:`Hidden`, or diagnosis labels).
    """

    def __init__(self, searcher: Any, hidden: Hidden | Iterable[str]) -> None:
        self.searcher = searcher
        self.hidden = hidden if isinstance(hidden, Hidden) else Hidden(labels=tuple(hidden))
        self.hide = self.hidden.filters

    def _merged(self, filters: Filters | None) -> Filters:
        if filters is None:
            return self.hide
        changes = {}
        for f in ("exclude_diagnoses", "exclude_doc_ids", "exclude_case_ids"):
            both = set(getattr(filters, f) or ()) | set(getattr(self.hide, f) or ())
            changes[f] = tuple(both) or None
        return dataclasses.replace(filters, **changes)

    def _hidden_rows(self, frame: Any) -> np.ndarray | None:
        if not isinstance(frame, pd.DataFrame) or not self.hidden:
            return None
        return ~self.hide.mask(frame)

    def removed(self) -> dict[str, int]:
        """How many documents, chunks and images are hidden (for the run's report)."""
        counts = {"documents": 0, "chunks": 0, "images": 0}
        chunks = getattr(self.searcher, "chunks", None)
        rows = self._hidden_rows(chunks)
        if rows is not None:
            counts["chunks"] = int(rows.sum())
            counts["documents"] = (
                int(chunks.loc[rows, "doc_id"].nunique()) if "doc_id" in chunks.columns else 0
            )
        images = getattr(self.searcher, "images", None)
        rows = self._hidden_rows(images)
        if rows is not None:
            counts["images"] = int(rows.sum())
        return counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.searcher, name)
        if name not in SEARCH_METHODS:
            return attr

        def search(*args: Any, filters: Filters | None = None, **kwargs: Any) -> Any:
            return attr(*args, filters=self._merged(filters), **kwargs)

        search.__doc__ = attr.__doc__
        return search


__all__ = [
    "SEARCH_METHODS",
    "Hidden",
    "HiddenSearcher",
    "diagnosis_labels",
    "documents_of_cases",
    "fold_label",
]
