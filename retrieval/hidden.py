"""A searcher that never returns the documents and images of some diagnoses: the "unseen disease" setting.

To measure how the product does on a disease that is in no document of the knowledge base, the evaluation
(``zebra eval nova --unseen``) hides, per case, every chunk and image whose diagnosis label the judge matches
to the case's gold diagnosis: its case reports, its disease discussion, its phenotype profile, the images of
its cases. :class:`HiddenSearcher` wraps a :class:`retrieval.searcher.Searcher` and adds
``Filters(exclude_diagnoses=...)`` to every search, so the searcher's own over-fetching keeps ``k`` results
and nothing hidden can reach a caller (the agent's candidates come only from search results). Everything else
is delegated to the wrapped searcher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pandas as pd

from retrieval.filters import Filters, fold_label

#: The search methods whose results are filtered.
SEARCH_METHODS = ("search_text", "search_image", "search_text_to_image", "search_image_to_text", "diagnose")


def diagnosis_labels(searcher: Any) -> list[str]:
    """Distinct diagnosis labels of a searcher's chunks and images (non-empty, as stored)."""
    labels: set[str] = set()
    for frame in (getattr(searcher, "chunks", None), getattr(searcher, "images", None)):
        if isinstance(frame, pd.DataFrame) and "diagnosis" in frame.columns:
            labels.update(str(v) for v in frame["diagnosis"].dropna().astype(str) if v.strip())
    return sorted(labels)


class HiddenSearcher:
    """A searcher view without the rows of some diagnosis labels (module docstring).

    Args:
        searcher: The searcher to wrap.
        labels: Diagnosis labels to hide (exact labels as stored; case and spacing folded).
    """

    def __init__(self, searcher: Any, labels: Iterable[str]) -> None:
        self.searcher = searcher
        self.hide = Filters(exclude_diagnoses=tuple(labels))

    @property
    def labels(self) -> tuple[str, ...]:
        """The hidden labels (folded)."""
        return self.hide.exclude_diagnoses or ()

    def _merged(self, filters: Filters | None) -> Filters:
        if filters is None:
            return self.hide
        own = set(filters.exclude_diagnoses or ())
        return dataclasses.replace(filters, exclude_diagnoses=tuple(own | set(self.labels)) or None)

    def removed(self) -> dict[str, int]:
        """How many documents, chunks and images are hidden (for the run's report)."""
        hidden = set(self.labels)
        counts = {"documents": 0, "chunks": 0, "images": 0}
        chunks = getattr(self.searcher, "chunks", None)
        if isinstance(chunks, pd.DataFrame) and "diagnosis" in chunks.columns and hidden:
            rows = chunks[chunks["diagnosis"].fillna("").astype(str).map(fold_label).isin(hidden)]
            counts["chunks"] = len(rows)
            counts["documents"] = int(rows["doc_id"].nunique()) if "doc_id" in rows.columns else 0
        images = getattr(self.searcher, "images", None)
        if isinstance(images, pd.DataFrame) and "diagnosis" in images.columns and hidden:
            counts["images"] = int(
                images["diagnosis"].fillna("").astype(str).map(fold_label).isin(hidden).sum()
            )
        return counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.searcher, name)
        if name not in SEARCH_METHODS:
            return attr

        def search(*args: Any, filters: Filters | None = None, **kwargs: Any) -> Any:
            return attr(*args, filters=self._merged(filters), **kwargs)

        search.__doc__ = attr.__doc__
        return search


__all__ = ["SEARCH_METHODS", "HiddenSearcher", "diagnosis_labels"]
