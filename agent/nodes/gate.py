"""``gate``: refuses what the agent must not answer: off-domain questions and inputs that are not medical
images (the VLM's input gate: noise, natural photos, blank or out-of-domain images)."""

from __future__ import annotations

import logging
from typing import Any

from agent.configuration import Configuration
from agent.nodes.common import note, traced
from agent.resources import AgentContext
from agent.state import AgentState
from zebra.errors import ZebraError

log = logging.getLogger(__name__)

_KIND_WORDS = {
    "noise": "it looks like random noise",
    "natural_photo": "it looks like an ordinary photograph, not a medical image",
    "blank": "it is blank",
    "out_of_domain": "it does not look like the medical images the model knows",
}


def _why(verdict: dict[str, Any]) -> str:
    """Why an image was refused: the gate's own reason for an out-of-domain image (it names what was found,
    e.g. the modality or body part of a DICOM header), else the kind in words."""
    reason = str(verdict.get("reason") or "").strip()
    if verdict.get("kind") == "out_of_domain" and reason:
        return reason[0].lower() + reason[1:].rstrip(".")
    return _KIND_WORDS.get(verdict["kind"], reason or verdict["kind"])


#: Least words of a question that describes a case by itself (no image, history or caption given).
CASE_QUESTION_WORDS = 6
#: Intents whose question may describe the case itself.
CASE_INTENTS = frozenset({"diagnosis", "differential", "location", "similar"})


def _gate_one(vlm: Any, image: Any, ctx: AgentContext, index: int) -> Any:
    """The gate verdict of one image; a full analysis is cached for perceive when the VLM has no ``gate``."""
    gate_fn = getattr(vlm, "gate", None)
    if callable(gate_fn):
        return gate_fn(image)
    prior = ctx.priors[0][1] if index == 0 and ctx.priors else None
    analysis = vlm.analyze(image, prior=prior)
    ctx.analyses[index] = analysis
    return analysis.current.gate


@traced("gate", reads=("question", "image_names", "new_case", "followup"))
def gate(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Routes the question by intent, then gates each image with the VLM.

    Abstains (``abstained``/``abstain_reason``) for an off-domain question, when every image is rejected, or
    when there is nothing to reason from (no input, no earlier case, not a literature question). A diagnostic
    question of at least :data:`CASE_QUESTION_WORDS` words with a medical word, asked without any other input,
    is taken as the description of a new case (``new_case``, ``case_text``).
    """
    router = ctx.resources.get_router()
    if state.get("reply"):
        # the user answers the agent's questions: a statement about the case, not a question to route
        intent = {"name": "diagnosis", "score": 1.0, "nearest": "(reply to the agent's questions)"}
    else:
        intent = router.route(state.get("question") or "")
    update: dict[str, Any] = {"intent": intent}
    notes: list[dict[str, Any]] = []
    if intent["name"] == "offdomain":
        update.update(
            abstained=True,
            abstain_reason="The question is not about medical images or a clinical case.",
            gate={"accepted": False, "kind": "question", "images": [], "blocked": True},
        )
        return update
    verdicts: list[dict[str, Any]] = []
    if ctx.images or ctx.priors:
        vlm = ctx.resources.get_vlm()
        if vlm is None:
            why = ctx.resources.vlm_error or "the VLM is switched off"
            notes.append(note(state, "gate", f"Image analysis unavailable ({why}); images were not gated."))
        else:
            for role, items in (("image", ctx.images), ("prior", ctx.priors)):
                for i, (name, image) in enumerate(items):
                    try:
                        if role == "image":
                            verdict = _gate_one(vlm, image, ctx, i)
                        elif callable(getattr(vlm, "gate", None)):
                            verdict = vlm.gate(image)
                        else:
                            verdict = None  # the prior's verdict comes with the analysis (perceive)
                    except ZebraError as exc:
                        notes.append(note(state, "gate", f"Could not gate {role} {name}: {exc.message}"))
                        continue
                    if verdict is None:
                        continue
                    verdicts.append({"role": role, "index": i, "image": name, **verdict.to_dict()})
    current = [v for v in verdicts if v["role"] == "image"]
    rejected = [v for v in current if not v["accepted"]]
    accepted_all = not current or len(rejected) < len(current)
    update["gate"] = {"accepted": accepted_all, "images": verdicts}
    text_given = bool(
        (state.get("history") or "").strip()
        or state.get("captions")
        or (state.get("case_text") or "").strip()
    )
    if current and not accepted_all:
        reasons = "; ".join(f"image {v['image']} was rejected because {_why(v)}" for v in rejected)
        if text_given and all(v["kind"] == "out_of_domain" for v in rejected):
            # a medical image outside the model's domain (another body region or modality): the clinical text
            # can still be read, so say so and reason from it (noise, photos and blanks stay refusals: the
            # wrong file was probably sent)
            update["gate"]["text_only"] = reasons
            notes.append(note(state, "gate", f"{reasons[0].upper()}{reasons[1:]}; reasoning from text only."))
        else:
            update.update(abstained=True, abstain_reason=f"The input gate rejected the images: {reasons}.")
    elif rejected:
        names = ", ".join(v["image"] for v in rejected)
        notes.append(note(state, "gate", f"Rejected by the input gate and ignored: {names}."))
    if not update.get("abstained") and not state.get("new_case") and not state.get("followup"):
        question = (state.get("question") or "").strip()
        if (
            intent["name"] in CASE_INTENTS
            and len(question.split()) >= CASE_QUESTION_WORDS
            and router.is_medical(question, clinical=True)
        ):
            # the question describes the case itself ("45-year-old with ...: what is it?")
            update.update(new_case=True, case_text=question)
        elif intent["name"] != "literature":
            update.update(
                abstained=True, abstain_reason="There is no image, history or earlier case to reason from."
            )
    update["gate"]["blocked"] = bool(update.get("abstained"))
    if notes:
        update["notes"] = notes
    return update


def route_after_gate(state: AgentState) -> str:
    """``respond`` (abstention or follow-up on the previous case), ``literature`` or ``perceive``."""
    if (state.get("gate") or {}).get("blocked"):
        return "respond"
    intent = (state.get("intent") or {}).get("name")
    if state.get("new_case"):
        return "perceive"
    if intent == "literature":
        return "literature"
    return "respond"
