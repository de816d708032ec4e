"""Shared machinery of the LLM reasoners: prompt messages, JSON extraction, validation, citation repair and
probability calibration.

Output handling, in order:

1. The first JSON object in the reply is taken (code fences and prose around it are ignored).
2. It is validated with pydantic (:class:`LLMOutput`); percentages (``60``) become fractions.
3. Citations are repaired: ``"[E1], E2"`` -> ``["E1", "E2"]``; ids that do not exist are dropped, and so are
   ``[X9]`` markers in rationales. A diagnosis left without a valid citation is dropped (an uncited claim).
4. Probabilities are replaced by calibrated ones: a diagnosis that the builtin scoring also proposes gets its
   calibrated probability; another gets the LLM's probability times the builtin "none of the candidates"
   probability. The total is scaled down to at most 1.

When nothing usable is left the result is marked ``fallback`` and the reason node uses the builtin scoring,
with a note saying why.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from agent.prompting import data_blocks, reasoning_prompt, system_prompt
from agent.reasoners.base import ReasoningRequest, ReasoningResult
from retrieval.diagnosis import DiagnosisMatcher

log = logging.getLogger(__name__)

_ID = re.compile(r"\b([EIM]\d{1,4})\b")
_MARK = re.compile(r"\[([EIM]\d{1,4}(?:\s*,\s*[EIM]\d{1,4})*)\]")
#: Evidence blocks passed to an LLM.
MAX_ITEMS = 16


class LLMItem(BaseModel):
    """One diagnosis proposed by an LLM."""

    diagnosis: str = Field(min_length=1, max_length=300)
    probability: float = 0.0
    citations: list[str] = Field(default_factory=list)
    rationale: str = ""

    @field_validator("probability", mode="before")
    @classmethod
    def _prob(cls, value: Any) -> float:
        value = float(value)
        if 1.0 < value <= 100.0:
            value /= 100.0
        return min(max(value, 0.0), 1.0)

    @field_validator("citations", mode="before")
    @classmethod
    def _cites(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        return [m for v in value or [] for m in _ID.findall(str(v))]

    @field_validator("diagnosis", "rationale", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return " ".join(str(value or "").split())


class LLMOutput(BaseModel):
    """The whole reply."""

    differential: list[LLMItem] = Field(default_factory=list)
    summary: str = ""


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (fences and prose ignored), or ``None``."""
    text = text or ""
    start = text.find("{")
    while start != -1:
        depth, in_str, escape = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if escape:
                    escape = False
                elif ch == "\\":
                    escape = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start : i + 1])
                    except json.JSONDecodeError:
                        break
                    if isinstance(value, dict):
                        return value
                    break
        start = text.find("{", start + 1)
    return None


def select_items(request: ReasoningRequest, max_items: int = MAX_ITEMS) -> list[dict[str, Any]]:
    """Evidence quoted to the LLM: items supporting the candidates first, then by rank; model outputs first."""
    by_id = {e["id"]: e for e in (*request.evidence, *request.image_evidence)}
    order: list[str] = []
    for cand in request.candidates:
        order += [i for i in cand.evidence_ids[:2] if i in by_id]
    order += [e["id"] for e in request.evidence]
    chosen = list(dict.fromkeys(order))[:max_items]
    return [*request.model_outputs, *(by_id[i] for i in chosen)]


def build_messages(request: ReasoningRequest, max_items: int = MAX_ITEMS) -> list[dict[str, str]]:
    """System and user messages of one reasoning request."""
    lines = []
    for i, (cand, p) in enumerate(zip(request.candidates, request.probabilities, strict=False), start=1):
        lines.append(
            f"{i}. {cand.label} (retrieval-based probability {p:.2f}; evidence {', '.join(cand.evidence_ids[:4])})"
        )
    history = "\n".join(part for part in (request.history, *request.captions) if part)
    user = reasoning_prompt(
        question=request.question,
        history=history,
        candidates="\n".join(lines),
        data=data_blocks(select_items(request, max_items)),
        k=request.k,
        language=request.language,
    )
    return [{"role": "system", "content": system_prompt()}, {"role": "user", "content": user}]


def _repair_rationale(text: str, valid: set[str]) -> str:
    def keep(m: re.Match[str]) -> str:
        ids = [i for i in _ID.findall(m.group(1)) if i in valid]
        return f"[{', '.join(ids)}]" if ids else ""

    return " ".join(_MARK.sub(keep, text).split())


def interpret(
    text: str, request: ReasoningRequest, *, backend: str, matcher: DiagnosisMatcher | None = None
) -> ReasoningResult:
    """Turns an LLM reply into a result (module docstring); ``fallback`` when nothing usable remains."""
    data = extract_json(text)
    if data is None:
        return _fallback(backend, "the LLM reply contained no JSON object")
    try:
        output = LLMOutput.model_validate(data)
    except ValidationError as exc:
        return _fallback(backend, f"the LLM reply did not match the schema ({exc.error_count()} errors)")
    valid = request.citable_ids()
    matcher = matcher or DiagnosisMatcher()
    notes: list[str] = []
    items: list[dict[str, Any]] = []
    for item in output.differential:
        cites = [c for c in dict.fromkeys(item.citations) if c in valid]
        if not cites:
            notes.append(f"Dropped {item.diagnosis!r}: it cited no existing evidence id.")
            continue
        if any(matcher.same(item.diagnosis, kept["diagnosis"]) for kept in items):
            continue
        items.append(
            {
                "diagnosis": item.diagnosis,
                "llm_probability": item.probability,
                "citations": cites,
                "rationale": _repair_rationale(item.rationale, valid),
            }
        )
    if not items:
        return _fallback(backend, "no proposed diagnosis cited existing evidence", notes)
    calibrate(items, request, matcher)
    items = items[: request.k]
    summary = _repair_rationale(output.summary, valid) or None
    return ReasoningResult(
        differential=items,
        backend=backend,
        null_probability=max(0.0, 1.0 - sum(i["probability"] for i in items)),
        summary=summary,
        notes=notes,
    )


def calibrate(items: list[dict[str, Any]], request: ReasoningRequest, matcher: DiagnosisMatcher) -> None:
    """Replaces LLM probabilities by calibrated ones (module docstring), in place; keeps the LLM's order."""
    for item in items:
        match = next(
            (
                (cand, p)
                for cand, p in zip(request.candidates, request.probabilities, strict=False)
                if matcher.same(cand.label, item["diagnosis"])
            ),
            None,
        )
        if match is not None:
            item["probability"] = float(match[1])
            item["acr_codes"] = match[0].acr_codes
            item["calibration"] = "builtin"
        else:
            item["probability"] = float(item["llm_probability"]) * float(request.null_probability)
            item["acr_codes"] = []
            item["calibration"] = "llm x null"
    total = sum(i["probability"] for i in items)
    if total > 1.0:
        for item in items:
            item["probability"] /= total
    for item in items:
        item["probability"] = round(item["probability"], 4)


def _fallback(backend: str, why: str, notes: Sequence[str] = ()) -> ReasoningResult:
    log.warning("%s reasoner output unusable: %s; using the builtin scoring", backend, why)
    return ReasoningResult(
        differential=[],
        backend=backend,
        notes=[
            *notes,
            f"The {backend} reasoner's output was unusable ({why}); the builtin scoring was used instead.",
        ],
        fallback=True,
    )
