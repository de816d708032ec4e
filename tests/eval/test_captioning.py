"""BLEU-4, ROUGE-L and clinical-term F1 against hand-computed values."""

from __future__ import annotations

import math

import pytest

from eval.metrics.captioning import (
    bleu_stats,
    corpus_bleu,
    lcs_length,
    rouge_l,
    sentence_bleu,
    tokenize,
)
from eval.metrics.terms import Vocabulary, extract_terms, f1_from_counts, term_counts, term_f1


def test_tokenize_splits_punctuation_and_folds_case() -> None:
    assert tokenize("T2-Hyperintense, Œdème.") == ["t2", "-", "hyperintense", ",", "oedeme", "."]


def test_identical_sentence_scores_one() -> None:
    assert sentence_bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)


def test_bleu_modified_precisions_hand_computed() -> None:
    stats = bleu_stats(tokenize("the cat sat on the mat"), [tokenize("the cat is on the mat")])
    assert stats.matches == [5, 3, 1, 0]
    assert stats.totals == [6, 5, 4, 3]
    assert (stats.cand_len, stats.ref_len) == (6, 6)
    # no 4-gram match: unsmoothed BLEU is 0; add-one smoothing for n >= 2 gives the geometric mean below
    assert sentence_bleu("the cat sat on the mat", "the cat is on the mat") == 0.0
    expected = (5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert sentence_bleu("the cat sat on the mat", "the cat is on the mat", smooth=True) == pytest.approx(
        expected
    )


def test_brevity_penalty() -> None:
    # every n-gram matches, the candidate is 4 tokens for a 6-token reference: BP = exp(1 - 6/4)
    assert sentence_bleu("the cat sat on", "the cat sat on the mat") == pytest.approx(math.exp(-0.5))
    # the closest reference length counts (4 of 4 and 6): no penalty
    assert sentence_bleu("the cat sat on", ["the cat sat on the mat", "the cat sat on"]) == pytest.approx(1.0)


def test_corpus_bleu_sums_statistics_before_combining() -> None:
    cands = ["a b c d", "a b c d e"]
    refs = ["a b c d", "a b x d e"]
    expected = (8 / 9 * 5 / 7 * 2 / 5 * 1 / 3) ** 0.25
    assert corpus_bleu(cands, refs) == pytest.approx(expected)
    # not the mean of sentence scores (1 and 0)
    assert corpus_bleu(cands, refs) != pytest.approx(0.5)
    with pytest.raises(ValueError):
        corpus_bleu(cands, refs[:1])


def test_rouge_l_hand_computed() -> None:
    assert lcs_length(["a", "x", "b", "y", "c", "z"], ["a", "b", "c"]) == 3
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("a b c", "a x b y c z") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_l("", "a b") == 0.0
    assert rouge_l("a b", ["q", "a b"]) == pytest.approx(1.0)


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
