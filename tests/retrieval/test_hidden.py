"""The "unseen disease" view of a searcher (retrieval.hidden): hidden labels never come back, k is kept."""

from __future__ import annotations

import pytest

from retrieval.filters import Filters, fold_label
from retrieval.hidden import HiddenSearcher, diagnosis_labels
from retrieval.searcher import Searcher


@pytest.fixture(scope="module")
def searcher(tiny_bundle) -> Searcher:
    return Searcher(tiny_bundle, verify=False)


def test_filters_fold_and_sort_excluded_labels() -> None:
    a = Filters(exclude_diagnoses=("Meningioma", " glioblastoma  multiforme"))
    b = Filters(exclude_diagnoses=["GLIOBLASTOMA MULTIFORME", "meningioma"])
    assert a == b and hash(a) == hash(b) and a.active
    assert a.exclude_diagnoses == ("glioblastoma multiforme", "meningioma")
    assert fold_label(" Moyamoya\tDisease ") == "moyamoya disease"


def test_hidden_labels_never_come_back_and_k_is_kept(searcher) -> None:
    labels = diagnosis_labels(searcher)
    assert len(labels) >= 3
    query = " ".join(searcher.chunks["text"].astype(str).head(3))
    plain = searcher.search_text(query, k=5)
    assert plain and plain[0].diagnosis
    hide = plain[0].diagnosis
    view = HiddenSearcher(searcher, [hide])
    hits = view.search_text(query, k=5)
    assert hits and all(fold_label(h.diagnosis or "") != fold_label(hide) for h in hits)
    n_visible = int((searcher.chunks["diagnosis"].fillna("").map(fold_label) != fold_label(hide)).sum())
    n_docs = searcher.chunks.loc[searcher.chunks["diagnosis"].fillna("").map(fold_label) != fold_label(hide)]
    assert len(hits) == min(5, n_visible, n_docs["doc_id"].nunique())
    # the caller's own filters still apply, merged with the hidden labels
    kind = str(searcher.chunks["kind"].iloc[0])
    merged = view.search_text(query, k=5, filters=Filters(kind=kind))
    assert all(h.kind == kind and fold_label(h.diagnosis or "") != fold_label(hide) for h in merged)
    # the wrapped searcher itself is untouched
    assert [h.doc_id for h in searcher.search_text(query, k=5)] == [h.doc_id for h in plain]


def test_removed_counts(searcher) -> None:
    label = diagnosis_labels(searcher)[0]
    counts = HiddenSearcher(searcher, [label]).removed()
    rows = searcher.chunks[searcher.chunks["diagnosis"].fillna("").map(fold_label) == fold_label(label)]
    assert counts["chunks"] == len(rows) > 0
    assert counts["documents"] == rows["doc_id"].nunique()
    assert HiddenSearcher(searcher, []).removed() == {"documents": 0, "chunks": 0, "images": 0}


def test_other_attributes_are_delegated(searcher) -> None:
    view = HiddenSearcher(searcher, ["x"])
    assert view.bundle is searcher.bundle and view.chunks is searcher.chunks
