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


def test_documents_and_cases_are_hidden_whatever_their_label(searcher) -> None:
    from retrieval.hidden import Hidden, documents_of_cases

    doc = str(searcher.chunks["doc_id"].iloc[0])
    query = str(searcher.chunks["text"].iloc[0])
    assert doc in {h.doc_id for h in searcher.search_text(query, k=5)}
    view = HiddenSearcher(searcher, Hidden(doc_ids=(doc,)))
    assert doc not in {h.doc_id for h in view.search_text(query, k=5)}
    assert view.removed()["documents"] == 1
    assert not Hidden() and Hidden(case_ids=("x",))
    linked = documents_of_cases(searcher)
    assert all(isinstance(v, set) for v in linked.values())


def test_documents_of_cases_reads_case_id_and_case_ids() -> None:
    import pandas as pd

    from retrieval.hidden import documents_of_cases

    class _S:
        chunks = pd.DataFrame(
            {
                "doc_id": ["d1", "d1", "d2", "d3"],
                "meta": ['{"case_id": "C1"}', '{"case_id": "C1"}', {"case_ids": ["C1", "C2"]}, "not json"],
            }
        )

    assert documents_of_cases(_S()) == {"C1": {"d1", "d2"}, "C2": {"d2"}}
