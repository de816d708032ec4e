"""The "unseen disease" setting of the harness (``zebra eval nova --unseen``).

Every MedPix figure measured with the default bundle is in the setting "the literature covers the disease": all
580 disease discussions are indexed, including those of the evaluated cases' diseases. With ``--unseen`` the
harness measures the other setting, "the disease is in no document": per case, every chunk and image whose
diagnosis label the **offline** judge matches to the case's gold diagnosis is hidden from retrieval (its case
reports, the case itself, its disease discussion, its phenotype profiles, the images of its cases), together
with every document linked to the case itself whatever its label (its MedPix topic discussion may carry another
title), and the run records how many were hidden. The offline judge is used whatever judge scores the run: hiding must be cheap,
deterministic and the same in every run; it over-hides rather than under-hides (an acronym or synonym match
hides the document too), which makes the setting stricter, never easier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eval.judges import Judge, OfflineJudge


class UnseenHider:
    """Chooses, per case, what to hide (module docstring).

    Args:
        labels: Every diagnosis label of the bundle (:func:`retrieval.hidden.diagnosis_labels`).
        judge: The judge that decides "same disease" (default: a fresh :class:`eval.judges.OfflineJudge`).
        linked: Case id -> documents linked to it (:func:`retrieval.hidden.documents_of_cases`).
    """

    def __init__(
        self,
        labels: Iterable[str],
        judge: Judge | None = None,
        linked: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.labels = sorted({str(label) for label in labels if str(label).strip()})
        self.judge = judge or OfflineJudge()
        self.linked = {str(k): tuple(sorted(v)) for k, v in (linked or {}).items()}

    @classmethod
    def for_searcher(cls, searcher: Any, judge: Judge | None = None) -> UnseenHider:
        """A hider over a searcher's labels and case links."""
        from retrieval.hidden import diagnosis_labels, documents_of_cases

        return cls(diagnosis_labels(searcher), judge, documents_of_cases(searcher))

    def hide(self, case_id: str, gold: Sequence[str] | str) -> Any:
        """The :class:`retrieval.hidden.Hidden` of one case: its gold labels' matches, its linked documents
        and its own images."""
        from retrieval.hidden import Hidden

        return Hidden(
            labels=tuple(self.hidden_for(gold)),
            doc_ids=self.linked.get(str(case_id), ()),
            case_ids=(str(case_id),),
        )

    def hidden_for(self, gold: Sequence[str] | str) -> list[str]:
        """The bundle's labels that denote one of the gold diagnoses (empty without a gold diagnosis)."""
        golds = [gold] if isinstance(gold, str) else list(gold)
        golds = [g for g in golds if g and g.strip()]
        return [label for label in self.labels if any(self.judge.same(label, g) for g in golds)]


def searcher_of(predictor: Any) -> Any | None:
    """The searcher a predictor retrieves with (the agent's or the retrieval baseline's), or ``None``."""
    searcher = getattr(predictor, "searcher", None)
    if searcher is not None:
        return searcher
    agent = getattr(predictor, "agent", None)
    resources = getattr(agent, "resources", None)
    return resources.get_searcher() if resources is not None else None


def removed_counts(searcher: Any, hidden: Any) -> dict[str, int]:
    """How many documents, chunks and images hiding ``hidden`` removes from ``searcher``."""
    from retrieval.hidden import HiddenSearcher

    return HiddenSearcher(searcher, hidden).removed()


__all__ = ["UnseenHider", "removed_counts", "searcher_of"]
