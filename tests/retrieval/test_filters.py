"""Metadata filters."""

from __future__ import annotations

import pandas as pd

from retrieval.filters import Filters

FRAME = pd.DataFrame(
    {
        "source": ["medpix", "medpix", "hpo", "jsonl"],
        "kind": ["case_report", "disease_discussion", "phenotype_profile", "text"],
        "modality": ["CT - noncontrast", "MRI T2", None, "PET-CT"],
        "body_region": ["Head", "Brain and Neuro", None, "chest"],
        "diagnosis": ["Meningioma", "", None, "Sarcoidosis"],
    }
)


def test_no_filter_keeps_everything_and_is_inactive() -> None:
    assert not Filters().active
    assert Filters().mask(FRAME).tolist() == [True, True, True, True]


def test_source_and_kind_are_exact_case_insensitive_and_accept_lists() -> None:
    assert Filters(source="MEDPIX").mask(FRAME).tolist() == [True, True, False, False]
    assert Filters(kind=["case_report", "text"]).mask(FRAME).tolist() == [True, False, False, True]
    assert Filters(source="medpix", kind="text").mask(FRAME).tolist() == [False] * 4


def test_modality_matches_whole_words_with_aliases() -> None:
    assert Filters(modality="CT").mask(FRAME).tolist() == [True, False, False, True]
    # "MR" matches "MRI T2" through the alias map; "magnetic resonance" too
    assert Filters(modality="MR").mask(FRAME).tolist() == [False, True, False, False]
    assert Filters(modality="magnetic resonance").mask(FRAME).tolist() == [False, True, False, False]
    assert Filters(modality="T").mask(FRAME).tolist() == [False] * 4


def test_body_region_and_has_diagnosis() -> None:
    assert Filters(body_region="brain").mask(FRAME).tolist() == [False, True, False, False]
    assert Filters(has_diagnosis=True).mask(FRAME).tolist() == [True, False, False, True]
    assert Filters(has_diagnosis=False).mask(FRAME).tolist() == [False, True, True, False]
    assert Filters(has_diagnosis=True).matches({"diagnosis": "X"})
    assert not Filters(modality="CT").matches({"diagnosis": "X"})  # missing column never matches


def test_filters_are_hashable_and_serialisable() -> None:
    f = Filters(modality=["CT", "MR"], has_diagnosis=True)
    assert f == Filters(modality=("CT", "MR"), has_diagnosis=True)
    assert hash(f) == hash(Filters(modality=("CT", "MR"), has_diagnosis=True))
    assert f.to_dict() == {"modality": ["CT", "MR"], "has_diagnosis": True}
