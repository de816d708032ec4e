"""Diagnosis-name normalisation and the same-diagnosis judge."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.diagnosis import DiagnosisMatcher, diagnosis_variants, normalize_diagnosis, same_diagnosis


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Crohn's Disease", "crohn"),
        ("Neurofibromatosis Type I", "neurofibromatosis type 1"),
        ("neurofibromatosis type 1", "neurofibromatosis type 1"),
        ("Stage IIIB Adenocarcinoma", "stage 3b adenocarcinoma"),
        ("Liver Metastases (colorectal)", "liver metastasis"),
        ("Haemorrhagic contusions", "hemorrhagic contusion"),
        ("Oesophageal atresia", "esophageal atresia"),
        ("Brain tumours", "brain tumor"),
        ("Non-Hodgkin's lymphoma", "nonhodgkin lymphoma"),
        ("Pulmonary Embolism", "pulmonary embolus"),
        ("Bladder Diverticula", "bladder diverticulum"),
        ("Multiple abscesses", "multiple abscess"),
        ("Arterial anomalies", "arterial anomaly"),
        ("Suspected Moyamoya disease", "moyamoya"),
        ("Down syndrome", "down"),
        (
            "Cardiomyopathy, dilated, 1C, with or without left ventricular noncompaction",
            "cardiomyopathy dilated 1c",
        ),
        ("  ", ""),
        (None, ""),
    ],
)
def test_normalize_diagnosis(name: str | None, expected: str) -> None:
    assert normalize_diagnosis(name) == expected


def test_trailing_generic_word_is_kept_when_it_is_the_whole_name() -> None:
    assert normalize_diagnosis("Disease") == "disease"
    assert normalize_diagnosis("Herpes") == normalize_diagnosis("herpes")


def test_variants_split_lists_and_keep_parenthesised_aliases() -> None:
    composite = "1. Metastatic breast cancer to lungs    \n2. Right side vocal cord paralysis\n3. Anemia"
    assert diagnosis_variants(composite) == (
        "metastatic breast cancer to lung",
        "right side vocal cord paralysis",
        "anemia",
    )
    assert diagnosis_variants("Aberrant Right Subclavian Artery (ARSA)") == (
        "aberrant right subclavian artery",
        "arsa",
    )
    assert diagnosis_variants("Meningioma vs. hemangiopericytoma") == ("meningioma", "hemangiopericytoma")


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("Pulmonary embolism", "Pulmonary Embolus", "exact"),
        ("Neurofibromatosis type 1", "NEUROFIBROMATOSIS, TYPE I; NF1", "exact"),
        ("PRES", "Posterior reversible encephalopathy syndrome", "acronym"),
        ("ARSA", "Aberrant Right Subclavian Artery", "acronym"),
        ("Meningioma", "Parasellar Meningioma and arachnoid cyst", "containment"),
        ("Glioblastoma", "Glioblastoma multiforme", "containment"),
        ("Chiari malformation type 2", "Chiari II malformation", "containment"),
        ("Calcaneal stress fracture", "Stress fracture", "containment"),
        ("Vocal cord paralysis", "1. Metastatic breast cancer\n2. Right vocal cord paralysis", "containment"),
        ("Medulloblastoma", "Medulloblastoma confirmed by pathology.", "containment"),
        # three generic words in order are a precise description
        (
            "Metastatic breast cancer to lungs - nodules",
            "1. Metastatic breast cancer to lungs",
            "containment",
        ),
        ("Cerebellar PICA infarction", "Posterior Inferior Cerebellar Artery Infarct", "acronym"),
    ],
)
def test_same_diagnosis_positive(a: str, b: str, reason: str) -> None:
    assert DiagnosisMatcher().reason(a, b) == reason
    assert DiagnosisMatcher().reason(b, a) == reason  # symmetric
    assert same_diagnosis(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Hodgkin lymphoma", "Non-Hodgkin lymphoma"),  # negation prefix is part of the word
        ("Neurofibromatosis type 2", "Neurofibromatosis type I"),
        ("Fracture", "Atlas fracture"),  # too generic
        ("Cyst", "Arachnoid cyst"),
        ("Jefferson fracture", "Atlas fracture"),
        ("Lung cancer", "Metastatic breast cancer to lungs"),  # words present, order not
        ("Meningioma", "Hemangiopericytoma"),
        ("Aberrant left subclavian artery", "Aberrant right subclavian artery"),
        (
            "Left ventricular non compaction",
            "Cardiomyopathy, dilated, 1C, with or without left ventricular noncompaction",
        ),
        ("Acute infarct", "Acute infarct detection with non-contrast CT"),  # two generic words
        ("Breast cancer to lungs", "Metastatic lung cancer to breast"),  # order differs
        ("PICA infarct", "Posterior cerebral artery infarction"),  # PCA, not PICA
        ("", "Meningioma"),
        (None, None),
    ],
)
def test_same_diagnosis_negative(a: str | None, b: str | None) -> None:
    assert not same_diagnosis(a, b)


def test_synonyms_groups_and_mapping() -> None:
    assert not same_diagnosis("Ledderhose disease", "Plantar fibromatosis")
    assert same_diagnosis(
        "Ledderhose disease", "Plantar fibromatosis", synonyms=[["plantar fibromatosis", "Ledderhose"]]
    )
    assert same_diagnosis(
        "Ledderhose", "plantar fibromatoses", synonyms={"Plantar fibromatosis": ["Ledderhose disease"]}
    )


class _TableEmbedder:
    """Returns fixed vectors per normalised text, counting calls."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls = 0

    def encode(self, texts, **_: object) -> np.ndarray:
        self.calls += 1
        return np.asarray([self.table[t] for t in texts], dtype=np.float32)


def test_embedding_rule_uses_threshold_and_caches() -> None:
    emb = _TableEmbedder(
        {"dentigerous cyst": [1.0, 0.0], "follicular cyst": [0.95, 0.312], "ameloblastoma": [0, 1]}
    )
    matcher = DiagnosisMatcher(embedder=emb, threshold=0.9)
    assert matcher.reason("Dentigerous cyst", "Follicular cyst") == "embedding"
    assert not matcher.same("Dentigerous cyst", "Ameloblastoma")
    calls = emb.calls
    assert matcher.same("Dentigerous cysts", "follicular cysts")
    assert emb.calls == calls  # both names were cached
    strict = DiagnosisMatcher(embedder=emb, threshold=0.99)
    assert not strict.same("Dentigerous cyst", "Follicular cyst")
