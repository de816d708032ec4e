"""Caption metrics against sacrebleu's and rouge-score's own outputs; clinical-term F1 against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from eval.metrics.captioning import (
    bleu_from_stats,
    bleu_stats,
    corpus_bleu,
    rouge_l,
    tokenize,
)
from eval.metrics.terms import Vocabulary, extract_terms, f1_from_counts, term_counts, term_f1

CANDIDATES = [
    "T2-hyperintense mass in the left frontal lobe with surrounding oedema.",
    "Ring-enhancing lesion, right parietal.",
    "",
    "No acute intracranial abnormality.",
    "Large extra-axial mass compressing the brainstem; T1 hypointense.",
]
REFERENCES = [
    "Axial T2-weighted image shows a hyperintense mass in the left frontal lobe with vasogenic edema.",
    "Ring enhancing lesion in the right parietal lobe with surrounding edema.",
    "Sagittal T1 image: Chiari I malformation.",
    "No acute intracranial abnormality.",
    "Extra-axial mass at the cerebellopontine angle compressing the brainstem.",
]


def test_tokenize_splits_punctuation_and_folds_case() -> None:
    # the clinical-term extractor's tokeniser (not BLEU's)
    assert tokenize("T2-Hyperintense, Œdème.") == ["t2", "-", "hyperintense", ",", "oedeme", "."]


def test_corpus_bleu_is_sacrebleus_13a_exp_on_a_0_1_scale() -> None:
    import sacrebleu

    ref = sacrebleu.corpus_bleu(CANDIDATES, [REFERENCES], tokenize="13a", smooth_method="exp")
    assert 0.0 < ref.score < 100.0
    assert corpus_bleu(CANDIDATES, REFERENCES) == pytest.approx(ref.score / 100.0, abs=1e-12)
    with pytest.raises(ValueError):
        corpus_bleu(CANDIDATES, REFERENCES[:2])


def test_summed_statistics_give_sacrebleus_corpus_score_on_any_subset() -> None:
    """What the harness and the bootstrap do: per-caption statistics, summed, then combined."""
    import sacrebleu

    stats = np.array([bleu_stats(c, r) for c, r in zip(CANDIDATES, REFERENCES, strict=True)])
    for subset in ([0, 1, 2, 3, 4], [0, 0, 4], [2], [1, 3]):
        ref = sacrebleu.corpus_bleu(
            [CANDIDATES[i] for i in subset],
            [[REFERENCES[i] for i in subset]],
            tokenize="13a",
            smooth_method="exp",
        )
        assert bleu_from_stats(stats[subset].sum(axis=0).tolist()) == pytest.approx(
            ref.score / 100, abs=1e-12
        )
    with pytest.raises(ValueError):
        bleu_from_stats([1.0, 2.0])


def test_bleu_is_case_sensitive_and_not_the_old_hand_tokeniser() -> None:
    # 13a keeps "T2-weighted" as one token and is case-sensitive, as sacrebleu's default
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert corpus_bleu(["The Cat Sat On The Mat"], ["the cat sat on the mat"]) < 0.1


def test_rouge_l_is_rouge_scores_f_measure() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for cand, ref in zip(CANDIDATES, REFERENCES, strict=True):
        expected = scorer.score(ref, cand)["rougeL"].fmeasure
        assert rouge_l(cand, ref) == pytest.approx(expected, abs=1e-12)
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("", "a b") == 0.0
    assert rouge_l("a b", ["q", "a b"]) == pytest.approx(1.0)  # the best reference counts
    with pytest.raises(ValueError):
        rouge_l("a", [])


VOCAB = Vocabulary.from_groups(
    [
        ("edema", ["edema", "oedema"]),
        ("ring", ["ring enhancement", "ring-enhancing"]),
        ("hem", ["hemorrhage"]),
        ("frontal", ["frontal lobe"]),
        ("lobe", ["lobe"]),
    ]
)


def test_term_extraction_spelling_longest_match_and_negation() -> None:
    assert extract_terms("Ring-enhancing lesion with oedema in the frontal lobe.", VOCAB) == {
        "ring",
        "edema",
        "frontal",
    }
    assert extract_terms("Ring enhancement and haemorrhages. No oedema.", VOCAB) == {"ring", "hem"}
    # negation ends at a clause boundary
    assert extract_terms("No haemorrhage; oedema present", VOCAB) == {"edema"}


def test_term_f1_hand_computed() -> None:
    pred = "Ring-enhancing lesion with oedema in the frontal lobe."
    ref = "Ring enhancement and haemorrhage. No oedema."
    tp, fp, fn = term_counts(extract_terms(pred, VOCAB), extract_terms(ref, VOCAB))
    assert (tp, fp, fn) == (1, 2, 1)
    assert term_f1(pred, ref, VOCAB) == pytest.approx(0.4)
    assert f1_from_counts(0, 0, 0) is None
    assert term_f1("nothing here", "nor here", VOCAB) is None


def test_default_vocabulary_has_radiology_and_hpo_terms() -> None:
    from eval.metrics.terms import default_vocabulary

    vocab = default_vocabulary()
    found = {
        vocab.names[c] for c in extract_terms("Glioblastoma with restricted diffusion and seizures.", vocab)
    }
    assert {"Glioblastoma multiforme", "diffusion restriction", "Seizure"} <= found
