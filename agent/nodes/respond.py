"""``respond``: answers the question actually asked, from templates (``prompts/answers.json``), with citations.

By intent: ``diagnosis`` (likeliest diagnosis and why, or the abstention and back-off, then the other
possibilities), ``differential``, ``location`` (boxes, site, heatmap files), ``change`` (the change statement),
``similar`` (similar images and case reports), ``literature`` (quoted passages), ``followup`` (the previous
answer). Image findings and the change statement are appended to diagnostic answers when present.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from agent.configuration import Configuration
from agent.evidence import confident_attributes
from agent.nodes.common import model_outputs, traced
from agent.prompting import fill, templates
from agent.resources import AgentContext
from agent.state import AgentState, turn_items

_IDS = re.compile(r"\b([EIML]\d{1,4})\b")


def _pct(p: float) -> str:
    return f"{100 * float(p):.0f}%"


def _short(text: str | None, width: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _items(entries: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{d['diagnosis']} ({_pct(d['probability'])}) [{', '.join(d['citations'][:3])}]" for d in entries
    )


def _diagnosis_text(state: AgentState, t: Mapping[str, str], *, differential_only: bool = False) -> list[str]:
    diff = state.get("differential") or []
    parts: list[str] = []
    if not diff:
        parts.append(
            fill(t["abstain"], reason=state.get("abstain_reason") or "")
            if state.get("abstained")
            else t["no_differential"]
        )
        return parts
    if differential_only:
        parts.append(fill(t["differential_only"], items=_items(diff)))
        if state.get("abstained"):
            parts.append(fill(t["abstain"], reason=state.get("abstain_reason") or ""))
        return parts
    if state.get("abstained"):
        parts.append(fill(t["abstain"], reason=state.get("abstain_reason") or ""))
        backoff = state.get("backoff")
        if backoff:
            parts.append(
                fill(
                    t["backoff"],
                    category=backoff["name"],
                    probability=_pct(backoff["probability"]),
                    members=", ".join(backoff["members"]),
                )
            )
        parts.append(fill(t["differential_only"], items=_items(diff)))
        return parts
    first = diff[0]
    parts.append(
        fill(
            t["primary"],
            diagnosis=first["diagnosis"],
            probability=_pct(first["probability"]),
            rationale=first["rationale"],
        )
    )
    if len(diff) > 1:
        parts.append(fill(t["differential"], items=_items(diff[1:])))
    return parts


def _image_first(state: AgentState, t: Mapping[str, str]) -> list[str]:
    """What the image shows, said before the differential (or why the image was not read)."""
    text_only = (state.get("gate") or {}).get("text_only")
    if text_only:
        return [fill(t["text_only"], reasons=text_only)]
    out = []
    for f in state.get("findings") or []:
        if f.get("id") and f.get("accepted", True) and f.get("findings") and f.get("caption"):
            out.append(fill(t["image_first"], caption=f["caption"], cite=f["id"]))
    return out


def _findings_text(state: AgentState, t: Mapping[str, str]) -> list[str]:
    out = []
    for f in state.get("findings") or []:
        if f.get("id") and f.get("accepted", True):
            if f.get("findings") and f.get("caption"):
                continue  # already said first (_image_first)
            score = f.get("anomaly_score")
            out.append(
                fill(
                    t["findings"],
                    image=f["image"],
                    score="n/a" if score is None else f"{float(score):.2f}",
                    caption=f.get("caption") or "no description",
                    cite=f["id"],
                )
            )
    change = state.get("change")
    if change:
        out.append(fill(t["change"], statement=change.get("statement", ""), cite=change.get("id", "")))
    return out


def _site(attrs: Mapping[str, Any]) -> str:
    """The confident site words (:func:`agent.evidence.confident_attributes`: a low-confidence "right frontal
    lobe" next to a caption that places the box in the midline reads as a contradiction); a region already named
    by the site ("frontal lobe" in "right frontal lobe") once."""
    confident = confident_attributes(dict(attrs))
    names = [str(confident[k]).strip() for k in ("site", "region") if confident.get(k)]
    kept = [n for n in dict.fromkeys(names) if not any(n != m and n.lower() in m.lower() for m in names)]
    return ", ".join(kept)


def _where(f: Mapping[str, Any]) -> str | None:
    boxes = f.get("boxes") or []
    site = _site(f.get("attributes") or {})
    parts = []
    if boxes:
        b = boxes[0]
        place = (
            f"in the {b['position']} part of the head (side by radiological convention, axial slice assumed), "
            if b.get("position")
            else ""
        )
        parts.append(
            f"the main finding lies {place}in the box x {b['x1']:.0f}-{b['x2']:.0f}, "
            f"y {b['y1']:.0f}-{b['y2']:.0f} px (confidence {float(b.get('score') or 0):.2f})"
        )
        if len(boxes) > 1:
            parts.append(f"{len(boxes) - 1} more candidate region(s)")
    if site:
        parts.append(f"site: {site}")
    if f.get("heatmap"):
        # The file name only: answers reach web users, who must not see server paths (--json has the path).
        parts.append(f"heatmap: {PurePath(str(f['heatmap'])).name}")
    if not parts:
        return None
    return "; ".join(parts) + f" [{f['id']}]"


def _location_text(state: AgentState, t: Mapping[str, str]) -> list[str]:
    findings = [f for f in state.get("findings") or [] if f.get("accepted", True)]
    if not findings:
        return [fill(t["location_none"], why="no image was given")]
    out = []
    for f in findings:
        if not f.get("id"):
            out.append(fill(t["location_none"], why=f"the image model could not analyse {f.get('image')}"))
            continue
        where = _where(f)
        out.append(
            fill(t["location"], image=f["image"], where=where)
            if where
            else fill(t["location_none"], why=f"the image model found no focal abnormality on {f['image']}")
        )
    return out


def _similar_text(state: AgentState, t: Mapping[str, str]) -> list[str]:
    items = []
    for img in (state.get("image_evidence") or [])[:5]:
        items.append(
            f"{img.get('case_id') or img.get('image_id')}: {img.get('diagnosis') or 'no label'} ({_short(img.get('caption'), 80)}) [{img['id']}]"
        )
    for e in state.get("evidence") or []:
        if e.get("kind") == "case_report" and len(items) < 8:
            items.append(f'"{_short(e.get("title"), 60)}" ({e.get("diagnosis") or "no label"}) [{e["id"]}]')
    return [fill(t["similar"], items="; ".join(items))] if items else [t["similar_none"]]


def _excerpt(item: Mapping[str, Any], width: int = 280) -> str:
    """The start of a passage without its title line (chunks begin with the document title)."""
    text = str(item.get("text") or item.get("quote") or "")
    title = str(item.get("title") or "")
    lines = text.split("\n")
    if len(lines) > 1 and title and lines[0].strip() == title.strip():
        text = "\n".join(lines[1:])
    return _short(text, width)


def _literature_text(state: AgentState, t: Mapping[str, str]) -> list[str]:
    items = state.get("literature") or []
    topic = items[0]["topic"] if items else ((state.get("intent") or {}).get("topic") or "this condition")
    if not items:
        return [fill(t["literature_none"], topic=topic)]
    quotes = " ".join(f'"{_excerpt(i)}" ({_short(i.get("title"), 60)}) [{i["id"]}]' for i in items[:3])
    return [fill(t["literature"], topic=topic, quotes=quotes)]


def _followup_text(state: AgentState, t: Mapping[str, str]) -> list[str]:
    turns = state.get("turns") or []
    if not turns:
        return [t["no_previous"]]
    # refer to the last diagnostic answer when there is one, else to the last answer
    last = next((x for x in reversed(turns) if x.get("primary")), turns[-1])
    previous = str(last.get("text", "")).replace(t["disclaimer"], "").strip()
    parts = [fill(t["followup"], question=last.get("question") or "(none)", answer=previous)]
    diff = state.get("differential") or []
    if diff:
        first = diff[0]
        statement = f"{first['diagnosis']} at {_pct(first['probability'])}"
        verification = state.get("verification") or {}
        if verification.get("threshold") is not None and verification["threshold"] <= 1.0:
            statement += f" (I commit to a diagnosis at {_pct(verification['threshold'])} or more)"
        parts.append(fill(t["confidence"], statement=statement + "."))
    return parts


def compose(
    state: AgentState, cfg: Configuration, questions: Sequence[Mapping[str, str]] = ()
) -> tuple[str, list[str]]:
    """The answer text and the ids it cites (``questions`` end a diagnostic answer)."""
    t = templates(cfg.language)
    intent = (state.get("intent") or {}).get("name", "diagnosis")
    gate = state.get("gate") or {}
    if intent == "offdomain":
        nearest = (state.get("intent") or {}).get("nearest", "")
        parts = [fill(t["offdomain"], question=_short(state.get("question"), 120), nearest=nearest)]
    elif state.get("abstained") and gate and not gate.get("accepted", True) and not gate.get("text_only"):
        reasons = (
            (state.get("abstain_reason") or "")
            .removeprefix("The input gate rejected the images: ")
            .rstrip(".")
        )
        parts = [fill(t["gated"], reasons=reasons)]
    elif (
        state.get("abstained")
        and not state.get("new_case")
        and not state.get("followup")
        and intent != "literature"
    ):
        parts = [t["no_input"]]
    elif intent == "location":
        parts = _location_text(state, t)
    elif intent == "change":
        change = state.get("change")
        parts = (
            [fill(t["change"], statement=change["statement"], cite=change["id"])]
            if change
            else [t["change_none"]]
        )
    elif intent == "similar":
        parts = _similar_text(state, t)
    elif intent == "literature":
        parts = _literature_text(state, t)
    elif intent == "followup":
        parts = _followup_text(state, t)
    elif intent == "differential":
        parts = _image_first(state, t) + _diagnosis_text(state, t, differential_only=True)
    else:
        parts = _image_first(state, t) + _diagnosis_text(state, t) + _findings_text(state, t)
    parts += _questions_text(questions, cfg.language)
    parts.append(t["disclaimer"])
    text = " ".join(p.strip() for p in parts if p and p.strip())
    return text, list(dict.fromkeys(_IDS.findall(text)))


def pending_questions(state: AgentState, cfg: Configuration) -> list[dict[str, str]]:
    """Questions for the user when a diagnostic turn on a new case abstains with few findings
    (:mod:`agent.questions`)."""
    intent = (state.get("intent") or {}).get("name", "diagnosis")
    gate = state.get("gate") or {}
    if (
        intent not in ("diagnosis", "differential")
        or not state.get("abstained")
        or state.get("followup")
        or gate.get("blocked")
        or not state.get("candidates")
    ):
        return []
    from agent.evidence import finding_terms
    from agent.questions import choose_questions

    # only what the image model states counts as a finding here; its low-confidence cues are no answer
    stated = finding_terms(state.get("findings") or [], stated_only=True, groups=None)
    return choose_questions(
        state.get("candidates") or [],
        state.get("evidence") or [],
        # with no history, the question may describe the case ("5-month-old girl with lethargy ...")
        history=state.get("history") or state.get("case_text") or state.get("question") or "",
        captions=state.get("captions") or [],
        image_terms=stated,
        language=cfg.language,
    )


def _questions_text(questions: Sequence[Mapping[str, str]], language: str) -> list[str]:
    if not questions:
        return []
    from agent.questions import question_templates

    lead = question_templates(language)["lead"]
    return [lead + " " + " ".join(f"({i}) {q['question']}" for i, q in enumerate(questions, start=1))]


def citation_table(state: AgentState, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The cited items, in id order of first appearance (text first, then the differential's)."""
    items = {
        str(i["id"]): i
        for i in (
            *(state.get("evidence") or []),
            *(state.get("image_evidence") or []),
            *(state.get("literature") or []),
            *model_outputs(state.get("findings") or [], state.get("change")),
        )
    }
    wanted = list(ids)
    for d in state.get("differential") or []:
        wanted += d.get("citations") or []
    out = []
    for item_id in dict.fromkeys(wanted):
        item = items.get(item_id)
        if item is None:
            continue
        out.append(
            {
                k: item.get(k)
                for k in (
                    "id",
                    "kind",
                    "doc_id",
                    "image_id",
                    "source",
                    "title",
                    "diagnosis",
                    "quote",
                    "char_start",
                    "char_end",
                    "url",
                    "path",
                    "what",
                    "model",
                )
                if item.get(k) is not None
            }
        )
    return out


@traced("respond", reads=("intent", "differential", "abstained", "findings", "change"))
def respond(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Composes the answer (module docstring) and records the turn."""
    questions = pending_questions(state, cfg)
    text, ids = compose(state, cfg, questions)
    intent = (state.get("intent") or {}).get("name", "diagnosis")
    reused = bool(state.get("followup")) and intent not in ("offdomain", "literature")
    differential = state.get("differential") or []
    answer = {
        "text": text,
        "question": state.get("question") or "",
        "intent": intent,
        "differential": [
            {k: d.get(k) for k in ("diagnosis", "probability", "citations", "rationale", "icd10")}
            for d in differential
        ]
        if intent != "offdomain"
        else [],
        "abstained": bool(state.get("abstained")),
        "abstain_reason": state.get("abstain_reason"),
        "backoff": state.get("backoff") if intent != "offdomain" else None,
        "findings": list(state.get("findings") or []) if intent != "offdomain" else [],
        "change": (state.get("change") or {}).get("statement") if intent != "offdomain" else None,
        "citations": citation_table(state, ids) if intent != "offdomain" else [],
        "reasoner": (state.get("reasoner") or {}).get("backend", ""),
        "questions": [dict(q) for q in questions],
        "notes": [n["text"] for n in turn_items(state, "notes")]
        + (["Answered from the case given earlier in this session."] if reused else []),
    }
    turn = {
        "turn": state.get("turn", 0),
        "question": answer["question"],
        "intent": intent,
        "text": text,
        "primary": differential[0]["diagnosis"] if differential and intent != "offdomain" else None,
        "abstained": answer["abstained"],
    }
    return {"answer": answer, "turns": [turn], "questions": [dict(q) for q in questions]}
