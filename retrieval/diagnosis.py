"""Diagnosis names: normalisation and an offline "same diagnosis?" judge.

:func:`normalize_diagnosis` maps spelling variants of one name to one string:

1. Unicode accents removed, lower case; ``(...)`` and ``[...]`` contents dropped (they are kept as aliases by
   :func:`diagnosis_variants`); possessive ``'s`` dropped (``Crohn's`` -> ``crohn``); ``&`` -> ``and``.
2. Hyphenated negation prefixes joined (``non-Hodgkin`` and ``non Hodgkin`` -> ``nonhodgkin``) so that
   ``non-Hodgkin lymphoma`` does not contain ``Hodgkin lymphoma``; every other punctuation becomes a space.
3. Per token: British spellings (``tumour``, ``haem``, ``oedema``, ``oesophag``, ``ae`` inside words ...),
   a few equivalent forms (``infarction`` -> ``infarct``, ``embolism`` -> ``embolus``), Roman numerals
   (``ii`` ... ``xii`` anywhere; ``i``, ``v``, ``x`` after ``type``/``grade``/``stage``/``class``... ;
   ``IIIB`` -> ``3b``), plurals (``metastases`` -> ``metastasis``, ``diverticula`` -> ``diverticulum``,
   ``-ies`` -> ``-y``, ``-sses`` -> ``-ss``, ``-oses`` -> ``-osis``, trailing ``s`` except after ``s/u/i/y/a``).
   Both sides of a comparison go through the same rules, so an imperfect singular (``herpes`` -> ``herpes``)
   is harmless.
4. Articles removed; leading hedges (``suspected``, ``probable``, ``consistent with`` ...) removed; a
   ``with or without ...`` clause removed (OMIM names: the optional feature is not the diagnosis); one
   trailing ``disease``/``syndrome``/``disorder`` removed when something else remains.

:func:`same_diagnosis` then says whether two names denote the same diagnosis. Each name is split into
*variants*: the parts of a list (lines, ``;``, bullets, ``1.``/``2)`` items, sentences, ``vs.``) and, per part,
the text without parentheses plus each parenthesised alias. Two names match when some variant pair matches by:

- ``exact``: equal normalised strings;
- ``acronym``: a one-word variant of 3-6 letters equals the initials of the other (``PRES``); or, inside a
  longer name, such a word abbreviates a run of the other's words and the expanded name matches it by the
  rules below (``cerebellar PICA infarction`` = ``posterior inferior cerebellar artery infarct``);
- ``synonym``: both are in one group of the ``synonyms`` given;
- ``containment``: the content words (stop words such as ``of``/``with``/``type`` dropped) of one are the same
  set as the other's, or a subset that occurs in the same order and is *specific enough*: it has a word that
  is not generic (``tumor``, ``cyst``, ``fracture``, ``acute``, ``left``, organ names ...) and, if it is a single
  word, that word has at least 4 characters; or it has at least three content words (a precise description
  even in generic words). So ``meningioma`` matches ``atypical meningioma`` and
  ``calcaneal stress fracture`` matches ``stress fracture``, but ``fracture`` does not match ``atlas fracture``
  and ``lung cancer`` does not match ``metastatic breast cancer to lungs``;
- ``embedding``: with an ``embedder``, the cosine similarity of the two whole normalised names reaches
  ``threshold``.

This is deliberately lenient towards a less specific but correct name (the usual judgement when grading a
differential diagnosis) and strict towards different named entities.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np


class _Encoder(Protocol):
    def encode(self, texts: Sequence[str], **kwargs: object) -> np.ndarray: ...


#: Default cosine threshold of the embedding rule: high, because related but different diseases embed close.
DEFAULT_EMBEDDING_THRESHOLD = 0.9

_ROMAN = {
    "i": 1,
    "ii": 2,
    "iii": 3,
    "iv": 4,
    "v": 5,
    "vi": 6,
    "vii": 7,
    "viii": 8,
    "ix": 9,
    "x": 10,
    "xi": 11,
    "xii": 12,
}
#: Roman numerals that are read as numbers only after one of these words (``i``, ``v``, ``x`` are words).
_NUMERAL_KEYWORDS = {"type", "grade", "stage", "class", "phase", "group", "factor", "level", "degree", "form"}
_AMBIGUOUS_ROMAN = {"i", "v", "x"}
_ROMAN_SUFFIX = re.compile(r"^(i{1,3}|iv|vi{0,3}|ix|xi{0,2})([a-d])$")

_IRREGULAR_PLURALS = {
    "metastases": "metastasis",
    "diverticula": "diverticulum",
    "emboli": "embolus",
    "thrombi": "thrombus",
    "calculi": "calculus",
    "bronchi": "bronchus",
    "fungi": "fungus",
    "nuclei": "nucleus",
    "vertebrae": "vertebra",
    "bullae": "bulla",
    "varices": "varix",
    "phalanges": "phalanx",
    "apices": "apex",
    "septa": "septum",
    "testes": "testis",
    "ova": "ovum",
    "hernias": "hernia",
    "ectases": "ectasis",
    "bronchiectases": "bronchiectasis",
    "teeth": "tooth",
    "feet": "foot",
    "children": "child",
}
_NO_SINGULAR = {
    "herpes",
    "diabetes",
    "rabies",
    "scabies",
    "mumps",
    "measles",
    "rickets",
    "shingles",
    "series",
}
_EQUIVALENT = {
    "tumour": "tumor",
    "infarction": "infarct",
    "embolism": "embolus",
    "fibre": "fiber",
    "centre": "center",
    "sulphur": "sulfur",
}
_OE_STEMS = ("oedem", "oesophag", "foet", "coeliac", "diarrhoe", "amoeb", "oestr", "homoeo", "dyspnoe")
_ARTICLES = {"a", "an", "the"}
_HEDGES = (
    "suspected",
    "suspicious for",
    "probable",
    "possible",
    "presumed",
    "presumptive",
    "likely",
    "rule out",
    "consistent with",
    "compatible with",
    "suggestive of",
    "concerning for",
    "findings of",
    "diagnosis of",
)
_TRAILING_GENERIC = {"disease", "syndrome", "disorder"}
_STOPWORDS = {
    "of",
    "and",
    "or",
    "with",
    "without",
    "in",
    "on",
    "at",
    "to",
    "from",
    "for",
    "by",
    "due",
    "type",
    "vs",
    "versus",
    "nos",
    "unspecified",
    "other",
    "the",
    "a",
    "an",
}
#: Words that do not make a name specific on their own (categories, qualifiers, places in the body).
GENERIC_WORDS = frozenset(
    [
        "tumor",
        "mass",
        "lesion",
        "cyst",
        "disease",
        "syndrome",
        "disorder",
        "cancer",
        "carcinoma",
        "neoplasm",
        "neoplasia",
        "malignancy",
        "infection",
        "inflammation",
        "fracture",
        "injury",
        "trauma",
        "hemorrhage",
        "bleed",
        "bleeding",
        "abscess",
        "infarct",
        "anomaly",
        "malformation",
        "deformity",
        "nodule",
        "metastasis",
        "metastatic",
        "process",
        "finding",
        "findings",
        "abnormality",
        "change",
        "effusion",
        "collection",
        "obstruction",
        "acute",
        "chronic",
        "subacute",
        "benign",
        "malignant",
        "primary",
        "secondary",
        "congenital",
        "acquired",
        "bilateral",
        "unilateral",
        "multiple",
        "solitary",
        "single",
        "typical",
        "atypical",
        "sporadic",
        "familial",
        "hereditary",
        "left",
        "right",
        "partial",
        "complete",
        "diffuse",
        "focal",
        "multifocal",
        "mild",
        "moderate",
        "severe",
        "large",
        "small",
        "giant",
        "simple",
        "complex",
        "juvenile",
        "adult",
        "infantile",
        "pediatric",
        "recurrent",
        "variant",
        "normal",
        "abnormal",
        "unknown",
        "early",
        "late",
        "old",
        "new",
        "post",
        "pre",
        "status",
        "brain",
        "head",
        "neck",
        "face",
        "skull",
        "spine",
        "spinal",
        "cord",
        "chest",
        "lung",
        "pulmonary",
        "heart",
        "cardiac",
        "liver",
        "hepatic",
        "kidney",
        "renal",
        "bone",
        "bony",
        "joint",
        "muscle",
        "tendon",
        "ligament",
        "skin",
        "soft",
        "tissue",
        "abdomen",
        "abdominal",
        "pelvis",
        "pelvic",
        "bowel",
        "colon",
        "breast",
        "artery",
        "arterial",
        "vein",
        "venous",
        "nerve",
        "vessel",
        "vascular",
        "cerebral",
        "intracranial",
        "orbit",
        "orbital",
        "eye",
        "thyroid",
    ]
)


def _ascii_lower(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def _singular(token: str) -> str:
    if token in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[token]
    if len(token) <= 3 or token in _NO_SINGULAR or not token.isalpha():
        return token
    if token.endswith("sses"):
        return token[:-2]
    if token.endswith("oses") and len(token) > 6:
        return token[:-2] + "is"
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith("omas"):
        return token[:-1]
    if token.endswith("ae") and len(token) > 4:
        return token[:-1]
    if token.endswith("s") and not token.endswith(("ss", "us", "is", "ys", "as")):
        return token[:-1]
    return token


def _respell(token: str) -> str:
    token = _EQUIVALENT.get(token, token)
    if token.startswith(_OE_STEMS):
        token = "e" + token[2:] if token.startswith("oe") else token.replace("oe", "e", 1)
    if len(token) > 3:
        # British "ae" inside a word (haemorrhage, anaemia, leukaemia, paediatric, caecum)
        token = token[0] + re.sub(r"ae(?=[a-z])", "e", token[1:])
    return token.replace("tumour", "tumor").replace("isation", "ization")


def _numerals(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for i, tok in enumerate(tokens):
        after_keyword = i > 0 and tokens[i - 1] in _NUMERAL_KEYWORDS
        if tok in _ROMAN and (tok not in _AMBIGUOUS_ROMAN or after_keyword):
            out.append(str(_ROMAN[tok]))
            continue
        m = _ROMAN_SUFFIX.match(tok)
        if m and (after_keyword or len(m.group(1)) >= 2):
            out.append(f"{_ROMAN[m.group(1)]}{m.group(2)}")
            continue
        out.append(tok)
    return out


@functools.lru_cache(maxsize=65536)
def _base_tokens(name: str) -> tuple[str, ...]:
    """Tokens after steps 1-3 of the module docstring (no hedge or suffix stripping)."""
    text = _ascii_lower(name or "")
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)
    text = re.sub(r"['’`]s\b", "", text)
    text = re.sub(r"['’`]", "", text)
    text = text.replace("&", " and ")
    text = re.sub(r"\b(non|pseudo|anti)\s*-\s*", r"\1", text)
    text = re.sub(r"\bnon\s+(?=[a-z])", "non", text)
    text = re.sub(r"[^0-9a-z]+", " ", text)
    tokens = [_singular(_respell(t)) for t in text.split()]
    return tuple(_numerals(tokens))


def _strip_hedges(tokens: tuple[str, ...]) -> tuple[str, ...]:
    toks = [t for t in tokens if t not in _ARTICLES]
    # "X, with or without Y" (OMIM style): Y is optional, so it is not part of the diagnosis
    for i in range(1, len(toks) - 2):
        if toks[i : i + 3] == ["with", "or", "without"]:
            toks = toks[:i]
            break
    changed = True
    while changed and toks:
        changed = False
        for hedge in _HEDGES:
            words = hedge.split()
            if toks[: len(words)] == words and len(toks) > len(words):
                toks = toks[len(words) :]
                changed = True
    if len(toks) > 1 and toks[-1] in _TRAILING_GENERIC:
        toks = toks[:-1]
    return tuple(toks)


def normalize_diagnosis(name: str | None) -> str:
    """Normalises a diagnosis name for grouping and comparison (rules in the module docstring).

    Args:
        name: A diagnosis name, possibly ``None``.

    Returns:
        The normalised name; ``""`` for an empty or ``None`` name.

    Examples:
        >>> normalize_diagnosis("Crohn's Disease")
        'crohn'
        >>> normalize_diagnosis("Neurofibromatosis Type I")
        'neurofibromatosis type 1'
        >>> normalize_diagnosis("Liver Metastases (colorectal)")
        'liver metastasis'
    """
    return " ".join(_strip_hedges(_base_tokens(name or "")))


_HARD_SPLIT = re.compile(
    r"\r?\n|;|\u2022|\u00bb|\s+(?:vs\.?|versus)\s+|(?:(?<=\s)|^)\d{1,2}\s*[.)]+(?=\s|[a-zA-Z])|(?<=[a-z)\]])\.(?:\s+|$)",
    re.IGNORECASE,
)


def diagnosis_parts(name: str | None) -> list[str]:
    """The raw items of a composite diagnosis string (lines, ``;``, bullets, numbered items, sentences,
    ``vs.``), without list numbering, bullets or trailing punctuation; empty items dropped."""
    parts: list[str] = []
    for part in _HARD_SPLIT.split(name or ""):
        cleaned = re.sub(r"^[\s\-–—•»*:.)]+|[\s.;:,]+$", "", part or "")
        if cleaned:
            parts.append(cleaned)
    return parts


@functools.lru_cache(maxsize=65536)
def diagnosis_variants(name: str | None) -> tuple[str, ...]:
    """The normalised names a (possibly composite) diagnosis string stands for.

    Lists (lines, ``;``, bullets, numbered items, sentences, ``vs.``) give one variant per part; a
    parenthesised alias (``(PRES)``) gives its own variant. The first variant is the first part.

    Args:
        name: A diagnosis string as found in a data set.

    Returns:
        Distinct non-empty normalised variants, in order of appearance.
    """
    out: list[str] = []
    for part in diagnosis_parts(name):
        for text in [part, *re.findall(r"\(([^)]*)\)|\[([^\]]*)\]", part)]:
            if isinstance(text, tuple):
                text = next((t for t in text if t), "")
            norm = normalize_diagnosis(text)
            if norm and norm not in out:
                out.append(norm)
    return tuple(out)


def content_tokens(normalized: str) -> tuple[str, ...]:
    """The words of a normalised name that carry meaning (stop words dropped), in order."""
    return tuple(t for t in normalized.split() if t not in _STOPWORDS)


#: A contained name of this many content words is specific enough even when each word is generic
#: ("metastatic breast cancer to lungs" inside "... lungs, nodules").
SPECIFIC_LENGTH = 3


def _is_specific(tokens: tuple[str, ...]) -> bool:
    if len(tokens) >= SPECIFIC_LENGTH:
        return True
    informative = [t for t in tokens if t not in GENERIC_WORDS]
    if not informative:
        return False
    return len(tokens) >= 2 or len(tokens[0]) >= 4


def _ordered_subsequence(small: tuple[str, ...], large: tuple[str, ...]) -> bool:
    it = iter(large)
    return all(tok in it for tok in small)


def _contains(a: str, b: str) -> bool:
    ta, tb = content_tokens(a), content_tokens(b)
    if not ta or not tb:
        return False
    if set(ta) == set(tb):
        return True
    small, large = (ta, tb) if len(set(ta)) < len(set(tb)) else (tb, ta)
    if not set(small) <= set(large):
        return False
    return _is_specific(small) and _ordered_subsequence(small, large)


def _initials(normalized: str) -> str:
    return "".join(t[0] for t in normalized.split() if t not in _STOPWORDS and t[0].isalpha())


def _acronym(a: str, b: str) -> bool:
    for short, long in ((a, b), (b, a)):
        if not (" " not in short and short.isalpha() and 3 <= len(short) <= 6 and " " in long):
            continue
        # a trailing "syndrome"/"disease" was dropped by normalisation (PRES = ... syndrome)
        if short in (_initials(long), _initials(long) + "s", _initials(long) + "d"):
            return True
    return False


def _expand_acronyms(short: str, long: str) -> str:
    """``short`` with each 3-6-letter word that abbreviates a run of ``long``'s content words replaced by that
    run (``cerebellar pica infarct`` against ``posterior inferior cerebellar artery infarct``)."""
    words = [t for t in long.split() if t not in _STOPWORDS]
    out: list[str] = []
    for tok in short.split():
        run = None
        if tok.isalpha() and 3 <= len(tok) <= 6 and tok not in words:
            n = len(tok)
            run = next(
                (
                    words[i : i + n]
                    for i in range(len(words) - n + 1)
                    if "".join(w[0] for w in words[i : i + n]) == tok
                ),
                None,
            )
        out.extend(run or [tok])
    return " ".join(out)


def _inner_acronym(a: str, b: str) -> bool:
    for short, long in ((a, b), (b, a)):
        expanded = _expand_acronyms(short, long)
        if expanded != short and " " in short and (expanded == long or _contains(expanded, long)):
            return True
    return False


def _synonym_groups(synonyms: Mapping[str, Iterable[str]] | Iterable[Iterable[str]]) -> dict[str, int]:
    groups: dict[str, int] = {}
    items: Iterable[Iterable[str]]
    if isinstance(synonyms, Mapping):
        items = ([key, *values] for key, values in synonyms.items())
    else:
        items = synonyms
    for gid, group in enumerate(items):
        for name in group:
            for variant in diagnosis_variants(name):
                groups.setdefault(variant, gid)
    return groups


class DiagnosisMatcher:
    """Reusable judge with a synonym table and an embedding cache; :func:`same_diagnosis` wraps it.

    Args:
        synonyms: Groups of equivalent names, as a mapping ``name -> other names`` or an iterable of groups.
        embedder: Optional text embedder (anything with ``encode(texts) -> (n, dim)`` L2-normalised array).
        threshold: Cosine similarity at or above which the embedding rule matches.
    """

    def __init__(
        self,
        *,
        synonyms: Mapping[str, Iterable[str]] | Iterable[Iterable[str]] | None = None,
        embedder: _Encoder | None = None,
        threshold: float = DEFAULT_EMBEDDING_THRESHOLD,
    ) -> None:
        self._groups = _synonym_groups(synonyms) if synonyms else {}
        self.embedder = embedder
        self.threshold = threshold
        self._vectors: dict[str, np.ndarray] = {}

    def reason(self, a: str | None, b: str | None) -> str | None:
        """Why ``a`` and ``b`` denote the same diagnosis (``"exact"``, ``"acronym"``, ``"synonym"``,
        ``"containment"``, ``"embedding"``), or ``None`` when they do not."""
        va, vb = diagnosis_variants(a or ""), diagnosis_variants(b or "")
        if not va or not vb:
            return None
        pairs = [(x, y) for x in va for y in vb]
        if any(x == y for x, y in pairs):
            return "exact"
        if any(_acronym(x, y) or _inner_acronym(x, y) for x, y in pairs):
            return "acronym"
        if self._groups and any(
            x in self._groups and self._groups[x] == self._groups.get(y) for x, y in pairs
        ):
            return "synonym"
        if any(_contains(x, y) for x, y in pairs):
            return "containment"
        if self.embedder is not None and self._similarity(va[0], vb[0]) >= self.threshold:
            return "embedding"
        return None

    def same(self, a: str | None, b: str | None) -> bool:
        """Whether ``a`` and ``b`` denote the same diagnosis."""
        return self.reason(a, b) is not None

    def _similarity(self, a: str, b: str) -> float:
        missing = [t for t in (a, b) if t not in self._vectors]
        if missing:
            assert self.embedder is not None
            vectors = np.asarray(self.embedder.encode(missing), dtype=np.float32)
            for text, vec in zip(missing, vectors, strict=True):
                self._vectors[text] = vec / (np.linalg.norm(vec) or 1.0)
        return float(self._vectors[a] @ self._vectors[b])


def same_diagnosis(
    a: str | None,
    b: str | None,
    *,
    synonyms: Mapping[str, Iterable[str]] | Iterable[Iterable[str]] | None = None,
    embedder: _Encoder | None = None,
    threshold: float = DEFAULT_EMBEDDING_THRESHOLD,
) -> bool:
    """Whether two diagnosis names denote the same diagnosis (rules in the module docstring).

    Args:
        a: A diagnosis name (may be a composite string such as a numbered list).
        b: Another diagnosis name.
        synonyms: Groups of equivalent names.
        embedder: Optional text embedder for the similarity rule.
        threshold: Cosine threshold of the similarity rule.

    Returns:
        ``True`` when some variant of ``a`` matches some variant of ``b``.
    """
    return DiagnosisMatcher(synonyms=synonyms, embedder=embedder, threshold=threshold).same(a, b)
