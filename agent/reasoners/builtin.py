"""``builtin``: evidence-fusion scoring with a fitted, calibrated conditional logit and templated rationales.

Weights: ``agent/weights/builtin_reasoner.json`` (or ``builtin:/path.json``), written by ``zebra agent fit``
(:mod:`agent.fit`) from MedPix train cases only. The file holds the model (:mod:`agent.reasoners.model`), the
risk-control table of its out-of-fold predictions (:mod:`agent.risk`) and the fit's provenance.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.errors import ReasonerWeightsError
from agent.evidence import TUMOUR_TYPE_WORDS, names_tumour_type
from agent.features import FEATURES, Candidate, feature_matrix
from agent.prompting import fill, templates
from agent.reasoners import REASONERS
from agent.reasoners.base import ReasoningRequest, ReasoningResult
from agent.reasoners.model import ConditionalLogit
from agent.risk import threshold_for

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "builtin_reasoner.json"
#: Target risk used when neither the configuration nor the weights file gives one.
FALLBACK_RISK = 0.4
_KIND_NAMES = {
    "case_report": "case report",
    "disease_discussion": "disease discussion",
    "phenotype_profile": "phenotype profile",
    "caption": "image caption",
}


def _short(text: str | None, width: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


class BuiltinReasoner:
    """The builtin reasoner (module docstring).

    Args:
        weights: Weights JSON file; default :data:`DEFAULT_WEIGHTS`.

    Raises:
        ReasonerWeightsError: When the file is missing or malformed.
    """

    name = "builtin"

    def __init__(self, weights: str | Path | None = None) -> None:
        path = Path(weights).expanduser() if weights else DEFAULT_WEIGHTS
        if not path.is_file():
            raise ReasonerWeightsError(
                f"Builtin reasoner weights {path} do not exist.",
                hint="Fit them: zebra agent fit --bundle B --medpix PATH --split train --out " + str(path),
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.model = ConditionalLogit.from_dict(data["model"], expected=FEATURES)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReasonerWeightsError(
                f"Builtin reasoner weights {path} are malformed: {exc}.",
                hint="Re-fit them with zebra agent fit.",
            ) from exc
        self.path = path
        self.data = data
        self.risk_control: dict[str, Any] = data.get("risk_control") or {}

    # ------------------------------------------------------------------ scoring
    def score(self, candidates: Sequence[Candidate]) -> tuple[list[float], float]:
        """Calibrated probabilities of ``candidates`` and of "none of them"."""
        if not candidates:
            return [], 1.0
        probs, null = self.model.probabilities(feature_matrix(candidates))
        return [float(p) for p in probs], float(null)

    def threshold(self, risk: float | None = None) -> float:
        """The top-1 probability needed to commit, for target risk ``risk`` (default: the file's)."""
        alpha = risk if risk is not None else self.risk_control.get("default_risk", FALLBACK_RISK)
        table = self.risk_control.get("table") or []
        if not table:
            return float(alpha)  # no calibration table: fall back to "probability at least 1 - risk"-ish
        return threshold_for(table, float(alpha), float(self.risk_control.get("delta", 0.1)))

    # ------------------------------------------------------------------ rationales
    def rationale(
        self, cand: Candidate, request: ReasoningRequest, language: str = "en"
    ) -> tuple[str, list[str]]:
        """A templated rationale and the ids it cites."""
        t = templates(language)
        by_id = {e["id"]: e for e in (*request.evidence, *request.image_evidence)}
        text_ids = [i for i in cand.evidence_ids if i.startswith("E") and i in by_id]
        image_ids = [i for i in cand.evidence_ids if i.startswith("I") and i in by_id]
        cites: list[str] = []
        parts: list[str] = []
        if text_ids:
            first = by_id[text_ids[0]]
            kinds = ", ".join(_KIND_NAMES.get(k, k.replace("_", " ")) for k in cand.kinds) or "documents"
            n = len(text_ids)
            support = f"Supported by {n} retrieved document{'s' if n != 1 else ''} ({kinds})"
            parts.append(
                fill(
                    t["rationale"],
                    support=support,
                    kind=_KIND_NAMES.get(first.get("kind", ""), first.get("kind", "document")),
                    title=_short(first.get("title"), 80),
                    best_rank=first.get("rank", "?"),
                    quote=_short(first.get("quote") or first.get("text")),
                    cite=text_ids[0],
                )
            )
            cites += text_ids[:3]
        if image_ids:
            parts.append(fill(t["rationale_image"], cite=", ".join(image_ids[:3])))
            cites += image_ids[:3]
        captions = [m for m in request.model_outputs if m.get("what") == "caption"]
        # The image model is cited only where its output supports the claim: the candidate's evidence names a
        # finding that the cited caption itself states (a low-confidence cue is not said, so it cannot be
        # cited), or the caption names the candidate's tumour type; and the candidate can be in the imaged region.
        if captions and cand.region != "other":
            from vlm.findings import load_vocabulary

            text = str(captions[0].get("quote") or captions[0].get("text") or "")
            said = load_vocabulary().extract(text)
            supported = [term for term in cand.agreed if term in said]
            kinds = [k for k in TUMOUR_TYPE_WORDS if k in text.lower() and names_tumour_type(cand.label, k)]
            if kinds:
                parts.append(fill(t["rationale_type"], kind=kinds[0], cite=captions[0]["id"]))
            if supported:
                parts.append(
                    fill(t["rationale_findings"], terms=", ".join(supported[:4]), cite=captions[0]["id"])
                )
            if supported or kinds:
                cites.append(captions[0]["id"])
        return " ".join(p.strip() for p in parts).strip(), list(dict.fromkeys(cites))

    def differential(
        self, request: ReasoningRequest, probabilities: Sequence[float] | None = None
    ) -> list[dict[str, Any]]:
        """The top ``request.k`` candidates by probability with rationales and citations."""
        probs = list(probabilities if probabilities is not None else request.probabilities)
        order = sorted(range(len(request.candidates)), key=lambda i: -probs[i])[: request.k]
        out = []
        for i in order:
            cand = request.candidates[i]
            rationale, cites = self.rationale(cand, request, request.language)
            out.append(
                {
                    "diagnosis": cand.label,
                    "probability": round(float(probs[i]), 4),
                    "citations": cites,
                    "rationale": rationale,
                    "acr_codes": cand.acr_codes,
                }
            )
        return out

    def reason(self, request: ReasoningRequest) -> ReasoningResult:
        """Ranks the candidates by calibrated probability (the request carries them, see the reason node)."""
        notes = []
        if request.language not in ("en", ""):
            notes.append(f"The builtin reasoner answers in English only (asked: {request.language}).")
        return ReasoningResult(
            differential=self.differential(request),
            backend=self.name,
            null_probability=request.null_probability,
            notes=notes,
        )


@REASONERS.register(
    "builtin", help="Fitted evidence-fusion scoring, no LLM (builtin or builtin:/weights.json)"
)
def _builtin(arg: str = "", *, weights: str | None = None, **_: object) -> BuiltinReasoner:
    return BuiltinReasoner(arg or weights or None)
