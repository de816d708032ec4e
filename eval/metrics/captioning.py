"""Captioning metrics from the field's maintained libraries: sacrebleu BLEU and rouge-score ROUGE-L.

- **BLEU** (:func:`corpus_bleu`, :func:`bleu_stats`, :func:`bleu_from_stats`): ``sacrebleu`` corpus BLEU with
  its ``13a`` tokeniser, exponential smoothing (``smooth_method="exp"``), case-sensitive, 4-grams, one
  reference per caption, reported on a 0-1 scale (sacrebleu's score / 100), as the NOVA reference harness
  reports it. Corpus BLEU sums the n-gram matches, totals and lengths over all captions before combining
  (:func:`bleu_stats` gives one caption's statistics; :func:`bleu_from_stats` combines summed ones through
  ``sacrebleu.BLEU.compute_bleu``, so a bootstrap resample re-aggregates exactly).
- **ROUGE-L** (:func:`rouge_l`): ``rouge-score``'s ``rougeL`` F-measure (its tokeniser: lower case,
  non-alphanumerics dropped; no stemming), the best over the references; the harness averages it over captions.
- **Clinical-term F1** is this project's own metric (:mod:`eval.metrics.terms`); :func:`tokenize` is the
  tokeniser of its term extraction and plays no part in BLEU or ROUGE.

Published caption metrics not computed here (BERTScore, METEOR, RadGraph F1, the reference's keyword F1s) and
why are listed in ``docs/eval.md``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
#: Letters that Unicode decomposition leaves alone.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "ł": "l"})

#: sacrebleu settings of every BLEU figure (the NOVA reference's).
BLEU_TOKENIZE = "13a"
BLEU_SMOOTH = "exp"
#: BLEU n-gram order.
BLEU_MAX_N = 4
#: Length of :func:`bleu_stats`: matches and totals per n, then candidate and reference length.
BLEU_STATS_LEN = 2 * BLEU_MAX_N + 2


def tokenize(text: str | None) -> list[str]:
    """Lower-cased word and punctuation tokens, accents removed (the clinical-term extractor's tokeniser)."""
    norm = unicodedata.normalize("NFKD", text or "")
    norm = "".join(c for c in norm if not unicodedata.combining(c)).lower().translate(_LIGATURES)
    return _TOKEN.findall(norm)


@functools.lru_cache(maxsize=1)
def _segment_bleu() -> BLEU:
    from sacrebleu.metrics import BLEU

    # effective_order only changes sentence *scores*; the statistics read here are the corpus ones
    return BLEU(tokenize=BLEU_TOKENIZE, smooth_method=BLEU_SMOOTH, effective_order=True)


@functools.lru_cache(maxsize=1)
def _rouge_scorer() -> RougeScorer:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], use_stemmer=False)


def _refs(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else [str(r) for r in references]
    if not refs:
        raise ValueError("a caption needs at least one reference")
    return refs


def bleu_stats(candidate: str, references: str | Sequence[str]) -> list[float]:
    """sacrebleu's sufficient statistics of one caption: ``[m1..m4, t1..t4, cand_len, ref_len]``.

    Raises:
        ValueError: Without references.
    """
    score = _segment_bleu().sentence_score(candidate or "", _refs(references))
    return [*map(float, score.counts), *map(float, score.totals), float(score.sys_len), float(score.ref_len)]


def bleu_from_stats(stats: Sequence[float]) -> float:
    """Corpus BLEU (0-1) from summed :func:`bleu_stats` (``sacrebleu.BLEU.compute_bleu``, ``exp`` smoothing).

    Raises:
        ValueError: When ``stats`` does not have :data:`BLEU_STATS_LEN` values.
    """
    from sacrebleu.metrics import BLEU

    values = [round(float(v)) for v in stats]
    if len(values) != BLEU_STATS_LEN:
        raise ValueError(f"BLEU statistics need {BLEU_STATS_LEN} values, got {len(values)}")
    n = BLEU_MAX_N
    score = BLEU.compute_bleu(
        values[:n], values[n : 2 * n], values[-2], values[-1], smooth_method=BLEU_SMOOTH, max_ngram_order=n
    )
    return float(score.score) / 100.0


def corpus_bleu(candidates: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0-1) of captions against one reference each.

    Raises:
        ValueError: When the lists differ in length.
    """
    from sacrebleu.metrics import BLEU

    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    metric = BLEU(tokenize=BLEU_TOKENIZE, smooth_method=BLEU_SMOOTH)
    return float(metric.corpus_score([c or "" for c in candidates], [list(references)]).score) / 100.0


def rouge_l(candidate: str, references: str | Sequence[str]) -> float:
    """rouge-score ROUGE-L F-measure of one caption, the best over ``references``.

    Raises:
        ValueError: Without references.
    """
    scorer = _rouge_scorer()
    return max(float(scorer.score(ref, candidate or "")["rougeL"].fmeasure) for ref in _refs(references))
