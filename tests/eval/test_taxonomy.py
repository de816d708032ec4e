"""ICD-10 mapping, taxonomy distance, catastrophic abstraction errors and ACR codes on hand-picked examples."""

from __future__ import annotations

import pytest

from retrieval.taxonomy import (
    Icd10Index,
    acr_distance,
    acr_region,
    default_index,
    icd_chapter,
    icd_distance,
    is_cae,
    taxonomy_distance,
)


@pytest.fixture(scope="module")
def index() -> Icd10Index:
    return default_index()


def test_icd_tree_distances() -> None:
    assert icd_distance("C71.9", "C71.9") == 0
    assert icd_distance("C71.9", "C71.6") == 2  # siblings under C71
    assert icd_distance("C71.9", "C71") == 1
    # C71.9 -> C71 -> C69-C72 -> C00-C75 -> C00-C97 (4 up); C79.3 -> C79 -> C76-C80 -> C00-C97 (3 up)
    assert icd_distance("C71.9", "C79.3") == 7
    # different chapters meet at the virtual root: G35 (depth 3) and I63.9 (depth 4)
    assert icd_distance("G35", "I63.9") == 7
    assert icd_chapter("G35") == "VI" and icd_chapter("I63.9") == "IX" and icd_chapter("II") == "II"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Multiple sclerosis", "G35"),
        ("Cerebral oedema", "G93.6"),
        ("Moyamoya disease", "I67.5"),
        ("Hansen's disease", "A30"),
        ("Glioblastoma multiforme (GBM)", "C71.9"),
        ("Atypical meningioma", "D32.9"),
        ("Vestibular schwannomas", "D33.3"),
        ("Cerebral infarction", "I63.9"),
        ("Parasellar meningioma and arachnoid cyst", "D32.9"),  # the head diagnosis wins
        ("Hypertensive encephalopathy in an eclamptic patient", "I67.4"),  # description inside the name
    ],
)
def test_names_map_to_expected_codes(index: Icd10Index, name: str, code: str) -> None:
    primary = index.primary(name)
    assert primary is not None and primary.code == code


@pytest.mark.parametrize("name", ["synthetic ring-enhancing lesion", "Brain tumour", "mass", ""])
def test_generic_or_unknown_names_are_unmappable(index: Icd10Index, name: str) -> None:
    assert index.primary(name) is None


def test_cae_hand_picked(index: Icd10Index) -> None:
    # neoplasm (II) called a stroke (IX): catastrophic
    assert is_cae("Acute ischemic stroke", "Glioblastoma", index=index) is True
    # both neoplasms (II): a wrong but not catastrophic diagnosis
    assert is_cae("Meningioma", "Glioblastoma", index=index) is False
    # multiple sclerosis (VI) vs a cerebral infarct (IX)
    assert is_cae("Multiple sclerosis", "Cerebral infarction", index=index) is True
    # undefined when a name does not map
    assert is_cae("synthetic calcified lesion", "Glioblastoma", index=index) is None
    # never a CAE when the judge says it is the same condition
    assert is_cae("GBM", "Glioblastoma", index=index, same=lambda a, b: True) is False


def test_taxonomy_distance_between_names(index: Icd10Index) -> None:
    assert taxonomy_distance("Glioblastoma", "Glioblastoma multiforme", index=index) == 0
    assert taxonomy_distance("Glioblastoma", "Brain metastases", index=index) == 7
    assert taxonomy_distance("Multiple sclerosis", "Cerebral infarction", index=index) == 7
    assert taxonomy_distance("x", "y", index=index, same=lambda a, b: True) == 0
    assert taxonomy_distance("synthetic lesion", "Glioblastoma", index=index) is None


def test_custom_keyword_table() -> None:
    idx = Icd10Index(keyword_codes={"zebroma": "D32.9", "bogus": "ZZ9"})
    assert idx.primary("Giant zebroma").code == "D32.9"
    assert idx.primary("bogus thing") is None  # an unknown code in the table is ignored


def test_acr_codes() -> None:
    assert acr_region("1.3") == "1" and acr_region(" 6.4.2") == "6"
    assert acr_region("") is None and acr_region("N/A") is None
    assert acr_distance("1.3", "1.3") == 0
    assert acr_distance("1.3", "1.5") == 2
    assert acr_distance("1.3", "6.1") == 4
    assert acr_distance(None, "1.1") is None
