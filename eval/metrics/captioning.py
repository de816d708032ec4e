"""Captioning metrics: BLEU-4 (corpus and sentence) and ROUGE-L.

Tokenisation (:func:`tokenize`): Unicode accents removed, lower case, ligatures spelled out (``œ`` -> ``oe``), then runs of letters/digits and single
punctuation marks are tokens (``"T2-hyperintense."`` -> ``t2 - hyperintense .``).

BLEU-4 (Papineni et al., 2002): modified n-gram precisions ``p_n`` for ``n = 1..4`` (candidate n-gram counts
clipped by the maximum count in any reference), uniform weights, geometric mean, times the brevity penalty
``BP = 1`` if ``c > r`` else ``exp(1 - r / c)``, where ``c`` is the candidate length and ``r`` the effective
reference length (the reference length closest to ``c``, the shorter on a tie). Corpus BLEU sums the clipped
counts, totals, ``c`` and ``r`` over all segments before combining (not an average of sentence scores).
Without smoothing, any ``p_n = 0`` gives BLEU 0; sentence BLEU can optionally use add-one smoothing of
``p_n`` for ``n >= 2`` (Lin & Och, 2004).

ROUGE-L (Lin, 2004): ``LCS`` = length of the longest common subsequence of the token lists,
``P = LCS / len(candidate)``, ``R = LCS / len(reference)``, ``F = (1 + b²) P R / (R + b² P)`` with ``b = 1``
(the harmonic mean); with several references the best F counts.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
#: Letters that Unicode decomposition leaves alone.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "ł": "l"})


def tokenize(text: str | None) -> list[str]:
    """Lower-cased word and punctuation tokens (module docstring)."""
    norm = unicodedata.normalize("NFKD", text or "")
    norm = "".join(c for c in norm if not unicodedata.combining(c)).lower().translate(_LIGATURES)
    return _TOKEN.findall(norm)


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


@dataclass
class BleuStats:
    """Sufficient statistics of BLEU for one segment or a corpus (they add up).

    Attributes:
        matches: Clipped n-gram matches for ``n = 1..max_n``.
        totals: Candidate n-gram counts for ``n = 1..max_n``.
        cand_len: Candidate length ``c``.
        ref_len: Effective reference length ``r``.
    """

    matches: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    totals: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    cand_len: int = 0
    ref_len: int = 0

    def __add__(self, other: BleuStats) -> BleuStats:
        return BleuStats(
            [a + b for a, b in zip(self.matches, other.matches, strict=True)],
            [a + b for a, b in zip(self.totals, other.totals, strict=True)],
            self.cand_len + other.cand_len,
            self.ref_len + other.ref_len,
        )

    def as_list(self) -> list[int]:
        """``matches + totals + [cand_len, ref_len]`` (flat, for arrays)."""
        return [*self.matches, *self.totals, self.cand_len, self.ref_len]


def bleu_stats(candidate: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> BleuStats:
    """BLEU statistics of one tokenised candidate against tokenised references.

    Raises:
        ValueError: Without references.
    """
    if not references:
        raise ValueError("BLEU needs at least one reference")
    matches, totals = [], []
    for n in range(1, max_n + 1):
        cand = _ngrams(candidate, n)
        best: Counter[tuple[str, ...]] = Counter()
        for ref in references:
            for gram, count in _ngrams(ref, n).items():
                best[gram] = max(best[gram], count)
        matches.append(sum(min(count, best[gram]) for gram, count in cand.items()))
        totals.append(max(len(candidate) - n + 1, 0))
    c = len(candidate)
    ref_len = min((abs(len(r) - c), len(r)) for r in references)[1]
    return BleuStats(matches, totals, c, ref_len)


def bleu_from_stats(stats: BleuStats | Sequence[float], *, smooth: bool = False) -> float:
    """BLEU from (summed) statistics: geometric mean of the n-gram precisions times the brevity penalty.

    Args:
        stats: A :class:`BleuStats` or its :meth:`BleuStats.as_list`.
        smooth: Add one to numerator and denominator of ``p_n`` for ``n >= 2``.
    """
    if not isinstance(stats, BleuStats):
        values = [float(v) for v in stats]
        max_n = (len(values) - 2) // 2
        stats = BleuStats(values[:max_n], values[max_n : 2 * max_n], values[-2], values[-1])  # type: ignore[arg-type]
    c, r = stats.cand_len, stats.ref_len
    if c == 0:
        return 0.0
    log_sum = 0.0
    for n, (m, t) in enumerate(zip(stats.matches, stats.totals, strict=True), start=1):
        if smooth and n >= 2:
            m, t = m + 1, t + 1
        if t == 0 or m == 0:
            return 0.0
        log_sum += math.log(m / t)
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    return bp * math.exp(log_sum / len(stats.matches))


def sentence_bleu(candidate: str, references: str | Sequence[str], *, smooth: bool = False) -> float:
    """BLEU-4 of one caption against one or more reference captions."""
    refs = [references] if isinstance(references, str) else list(references)
    return bleu_from_stats(bleu_stats(tokenize(candidate), [tokenize(r) for r in refs]), smooth=smooth)


def corpus_bleu(candidates: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Corpus BLEU-4: statistics summed over segments, then combined (module docstring).

    Raises:
        ValueError: When the lists differ in length.
    """
    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    total = BleuStats()
    for cand, refs in zip(candidates, references, strict=True):
        ref_list = [refs] if isinstance(refs, str) else list(refs)
        total = total + bleu_stats(tokenize(cand), [tokenize(r) for r in ref_list])
    return bleu_from_stats(total)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)))."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, references: str | Sequence[str], beta: float = 1.0) -> float:
    """ROUGE-L F-measure (module docstring); 0 when either side is empty."""
    refs = [references] if isinstance(references, str) else list(references)
    cand = tokenize(candidate)
    best = 0.0
    for ref in refs:
        ref_tokens = tokenize(ref)
        lcs = lcs_length(cand, ref_tokens)
        if lcs == 0:
            continue
        p, r = lcs / len(cand), lcs / len(ref_tokens)
        best = max(best, (1 + beta**2) * p * r / (r + beta**2 * p))
    return best
