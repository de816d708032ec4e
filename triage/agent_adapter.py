"""The one module that talks to the diagnostic agent (and the VLM), so that an API change touches one place.

An *analyser* turns a :class:`triage.types.WorkItem` into a :class:`triage.types.Analysis`. Analysers are
named by a spec, like every Zebra backend (:mod:`zebra.registry`):

- ``agent`` (default): :class:`AgentAnalyser`, ``agent.api.Agent(config).ask(...)`` with the ``--vlm`` and
  ``--reasoner`` backends and the bundle; rarity from the bundle's image index. When ``agent.api`` is not
  installed it falls back to ``vlm`` and says so in the result's notes.
- ``vlm``: :class:`VlmAnalyser`, the VLM alone (gate, anomaly, boxes, caption, change against the prior) plus
  the bundle's image index (rarity, and a differential voted by the nearest known cases' diagnoses).
- ``fake[:options]``: :class:`triage.fake.FakeAnalyser`, deterministic, for tests and engine benchmarks.

Each worker process creates its analyser once (models load once per process) and calls
:meth:`Analyser.analyse` per item.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from triage import studies
from triage.errors import AnalyserError
from triage.types import Analysis, WorkItem
from zebra.registry import BackendSpec, Registry

log = logging.getLogger(__name__)

#: The question the agent is asked for every study.
TRIAGE_QUESTION = "What is the most likely diagnosis, and what is the differential diagnosis?"
#: Keys under which a gate verdict carries its out-of-distribution distance and the rejection threshold.
_OOD_KEY, _OOD_THRESHOLD_KEY = "ood_score", "ood_threshold"
#: Largest overlay PNG taken from the agent's heatmap files (bytes).
_MAX_OVERLAY_BYTES = 4 * 1024 * 1024


class Analyser(Protocol):
    """What a worker calls per item."""

    name: str

    def analyse(self, item: WorkItem) -> Analysis:
        """Analyses one study (and its prior)."""
        ...


@dataclass(frozen=True)
class AnalyserSpec:
    """How a worker builds its analyser (JSON-safe, so it travels to spawned processes and Ray tasks).

    Attributes:
        analyser: Analyser spec: ``agent``, ``vlm`` or ``fake[:options]``.
        vlm: VLM backend spec (``None``: settings). reasoner: Reasoner backend spec (``None``: settings).
        bundle: Index bundle folder (``None``: settings).
        max_images: Images analysed per study.
    """

    analyser: str = "agent"
    vlm: str | None = None
    reasoner: str | None = None
    bundle: str | None = None
    max_images: int = 4

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalyserSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            **{k: data[k] for k in ("analyser", "vlm", "reasoner", "bundle", "max_images") if k in data}
        )


ANALYSERS: Registry[Analyser] = Registry("triage analyser")


def create_analyser(spec: AnalyserSpec) -> Analyser:
    """Builds the analyser ``spec`` names (loading its models).

    Raises:
        BackendNotFoundError: Unknown analyser name.
        AnalyserError, ModelError: When it cannot be built.
    """
    parsed = BackendSpec.parse(spec.analyser)
    return ANALYSERS.create(parsed, options=spec)


@ANALYSERS.register("fake", help="Deterministic analyser for tests and benchmarks (fake:fail=X,delay=S)")
def _fake(arg: str, *, options: AnalyserSpec) -> Analyser:
    from triage.fake import FakeAnalyser

    return FakeAnalyser(arg)


@ANALYSERS.register("agent", help="The diagnostic agent (agent.api) with the --vlm/--reasoner backends")
def _agent(arg: str, *, options: AnalyserSpec) -> Analyser:
    try:
        import agent.api  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in ("agent.api", "agent"):
            raise
        log.warning("agent.api is not installed: triage falls back to the VLM and the image index")
        fallback = VlmAnalyser(options)
        fallback.notes.append(
            "The diagnostic agent is not installed: differential voted by similar known cases."
        )
        return fallback
    return AgentAnalyser(options)


@ANALYSERS.register("vlm", help="The VLM and the bundle's image index, without the agent")
def _vlm(arg: str, *, options: AnalyserSpec) -> Analyser:
    return VlmAnalyser(options)


# ---------------------------------------------------------------------------------------------------- rarity
class _Rarity:
    """Nearest known case in the bundle's image index (lazy; disabled when the bundle has no image index)."""

    def __init__(self, bundle: str | None, searcher: Callable[[], Any] | None = None) -> None:
        self.bundle = bundle
        self._searcher: Any = None
        # The agent's own searcher when there is one: the bundle, its tables and the image embedder load
        # once per process, and an image the agent already searched is not embedded again.
        self._make_searcher = searcher
        self.enabled = bool(bundle) and Path(bundle).is_dir()

    def nearest(self, image: Any, k: int = 1) -> list[Any]:
        if not self.enabled:
            return []
        from retrieval.errors import NoImageIndexError

        try:
            if self._searcher is None:
                if self._make_searcher is not None:
                    self._searcher = self._make_searcher()
                else:
                    from retrieval.searcher import Searcher

                    self._searcher = Searcher(self.bundle, verify=False)
            return list(self._searcher.search_image(image, k=k))
        except NoImageIndexError:
            log.info("the bundle has no image index: rarity comes from the text evidence only")
            self.enabled = False
            return []


def _hit_similarity(hit: Any) -> float | None:
    scores = getattr(hit, "scores", None)
    value = getattr(scores, "dense", None)
    if value is None:
        value = getattr(scores, "fused", None)
    return None if value is None else float(value)


# ---------------------------------------------------------------------------------------------------- agent
class AgentAnalyser:
    """The diagnostic agent (engineer H's ``agent.api.Agent``) per study.

    Args:
        spec: Backends, bundle and images per study.

    Raises:
        AnalyserError: When the agent cannot be created.
    """

    def __init__(self, spec: AnalyserSpec) -> None:
        import shutil
        import tempfile
        import weakref

        from agent.api import Agent
        from agent.configuration import Configuration

        # Heatmap overlays go to a private scratch folder; each is read into the result, then deleted.
        self._heat_dir = tempfile.mkdtemp(prefix="zebra-triage-heat-")
        weakref.finalize(self, shutil.rmtree, self._heat_dir, True)
        config = Configuration.from_settings(
            vlm=spec.vlm,
            reasoner=spec.reasoner,
            bundle=spec.bundle,
            max_images=spec.max_images,
            save_heatmaps=True,
            heatmap_dir=self._heat_dir,
        )
        # No session store: every study is a fresh, independent question.
        self.agent = Agent(config, checkpointer=None)
        self.spec = spec
        self.name = f"agent(vlm={config.vlm}, reasoner={config.reasoner})"
        self.rarity = _Rarity(config.bundle, self.agent.resources.get_searcher)
        self.notes: list[str] = []
        self.last_timings: dict[str, float] = {}

    def analyse(self, item: WorkItem) -> Analysis:
        """Asks the agent :data:`TRIAGE_QUESTION` about the study, with its prior and history."""
        import shutil

        images = studies.pick_images(studies.load(item.study_path), self.spec.max_images)
        if not images:
            raise AnalyserError("The study holds no image.", hint="Check the worklist entry.")
        priors = studies.pick_images(studies.load(item.prior_path), 1) if item.prior_path else []
        # Generic names: source file names may carry identifiers, and the agent quotes names.
        current = [(f"image{i + 1}", studies.display_array(im)) for i, im in enumerate(images)]
        prior = [("prior", studies.display_array(im)) for im in priors]
        try:
            answer, state = self.agent.run(
                TRIAGE_QUESTION, images=current, priors=prior, history=item.history
            )
            # Seconds per agent node of this study (benchmarks); never part of the result.
            self.last_timings = dict(getattr(answer, "timings", None) or {})
            analysis = analysis_from_answer(answer, state)
        finally:
            for child in Path(self._heat_dir).iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        # The boxes and heatmap are those of the first image the gate accepted: show (and write back) that one.
        index = analysis.image_index if 0 <= analysis.image_index < len(current) else 0
        analysis.image = current[index][1]
        analysis.analyser = self.name
        analysis.notes = [*self.notes, *analysis.notes]
        if analysis.nearest_similarity is None:
            hits = self.rarity.nearest(analysis.image)
            if hits:
                analysis.nearest_similarity = _hit_similarity(hits[0])
                analysis.nearest_diagnosis = getattr(hits[0], "diagnosis", None)
        return analysis


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dict(vars(obj))


def gate_ood(scores: dict[str, Any] | None) -> float | None:
    """The gate's OOD signal in [0, 1]: its embedding distance over its rejection threshold (1 = at or past
    the threshold), or ``None`` when the gate did not compute one."""
    scores = scores or {}
    distance, threshold = _finite(scores.get(_OOD_KEY)), _finite(scores.get(_OOD_THRESHOLD_KEY))
    if distance is None:
        return None
    if threshold is None or threshold <= 0:
        return min(1.0, max(0.0, distance))
    return min(1.0, max(0.0, distance / threshold))


def _finite(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _text_support(differential: list[dict[str, Any]], candidates: list[Any]) -> float | None:
    """How close the best text passage supporting the top diagnosis came to the case: the reasoner's
    ``dense_best`` feature of that candidate (query cosine of its best chunk), or ``None``."""
    if not differential:
        return None
    top = differential[0]["diagnosis"].strip().lower()
    for cand in (_as_dict(c) for c in candidates):
        if (
            str(cand.get("label", "")).strip().lower() == top
            or str(cand.get("key", "")).strip().lower() == top
        ):
            value = _finite(_as_dict(cand.get("features")).get("dense_best"))
            return None if value is None else min(1.0, max(0.0, value))
    return None


def _is_image_item(item: dict[str, Any]) -> bool:
    """An image-to-image evidence item (``I*`` id, not an image -> text chunk)."""
    return str(item.get("id", "")).startswith("I") and item.get("via", "image") == "image"


def parse_change(change: Any) -> tuple[str | None, float | None, str | None]:
    """``(label, confidence, statement)`` of the agent's change output: a ``ChangeAnalysis``-like mapping
    (``label``, ``confidence``, ``statement``) or a sentence (label found by its words)."""
    if change is None or change == "":
        return None, None, None
    if not isinstance(change, str):
        data = _as_dict(change)
        label = data.get("label")
        return (
            str(label) if label else None,
            _finite(data.get("confidence")),
            data.get("statement") or None,
        )
    text = change.lower()
    for label, words in (
        ("worsening", r"worse|worsening|progress|larger|increas|grew|new "),
        ("improved", r"improv|smaller|decreas|shrank|regress|resolv"),
        ("stable", r"stable|unchanged|no (significant |interval )?change"),
    ):
        if re.search(words, text):
            return label, None, change
    return None, None, change


def analysis_from_answer(answer: Any, state: dict[str, Any] | None = None) -> Analysis:
    """Maps an ``agent.answer.Answer`` (or its dictionary) onto an :class:`Analysis` (image fields empty).

    Args:
        answer: The agent's answer.
        state: The final graph state of :meth:`agent.api.Agent.run`, when available: its structured
            ``change`` (label and confidence, where the answer only has the sentence) and ``image_evidence``
            (similarity of the nearest known images) are preferred.
    """
    data = _as_dict(answer)
    state = state or {}
    differential = [
        {
            "diagnosis": str(d.get("diagnosis", "")),
            "probability": round(_finite(d.get("probability")) or 0.0, 4),
            "citations": [str(c) for c in d.get("citations") or []],
        }
        for d in (_as_dict(x) for x in data.get("differential") or [])
    ]
    findings = [_as_dict(f) for f in data.get("findings") or []]
    gates = [_as_dict(f.get("gate")) for f in findings if f.get("gate") is not None]
    anomaly = [s for s in (_finite(f.get("anomaly_score")) for f in findings) if s is not None]
    ood = [v for v in (gate_ood(_as_dict(g.get("scores"))) for g in gates) if v is not None]
    first = next((f for f in findings if _as_dict(f.get("gate")).get("accepted", True)), {})
    label, confidence, statement = parse_change(state.get("change") or data.get("change"))
    if label is not None and confidence is None:
        # The change statement is text; its confidence may sit with the findings.
        for f in findings:
            conf = _finite(_as_dict(f.get("change")).get("confidence"))
            if conf is not None:
                confidence = conf
                break
    similar = [
        score
        for c in [*(state.get("image_evidence") or []), *(data.get("citations") or [])]
        if _is_image_item(_as_dict(c))
        and (
            score := _finite(_as_dict(c).get("score"))
            or _finite(_as_dict(_as_dict(c).get("scores")).get("dense"))
        )
        is not None
    ]
    nearest = max(
        (_as_dict(c) for c in state.get("image_evidence") or [] if _is_image_item(_as_dict(c))),
        key=lambda c: _finite(c.get("score")) or 0.0,
        default={},
    )
    text_support = _text_support(differential, state.get("candidates") or [])
    overlay = None
    heat = first.get("heatmap") or first.get("heatmap_path") or first.get("overlay")
    if isinstance(heat, str) and heat.lower().endswith(".png"):
        path = Path(heat)
        if path.is_file() and path.stat().st_size <= _MAX_OVERLAY_BYTES:
            overlay = path.read_bytes()
    return Analysis(
        differential=differential,
        abstained=bool(data.get("abstained", False)),
        abstain_reason=data.get("abstain_reason"),
        anomaly_score=max(anomaly) if anomaly else None,
        gate_accepted=all(bool(g.get("accepted", True)) for g in gates[:1]),
        gate_kind=str(gates[0].get("kind", "medical")) if gates else "medical",
        ood_score=max(ood) if ood else None,
        boxes=[_as_dict(b) for b in first.get("boxes") or []],
        caption=first.get("caption"),
        change_label=label,
        change_confidence=confidence,
        change_statement=statement,
        nearest_similarity=max(similar) if similar else None,
        nearest_diagnosis=nearest.get("diagnosis"),
        text_support=text_support,
        overlay_png=overlay,
        notes=[str(n) for n in data.get("notes") or []],
        evidence=cited_evidence(differential, data.get("citations") or []),
        image_index=_index(first.get("index")),
    )


def _index(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def cited_evidence(differential: list[dict[str, Any]], citations: list[Any]) -> list[dict[str, Any]]:
    """``{"id", "doc_id", "title"}`` of every citation item the differential cites, in citation order."""
    cited = list(dict.fromkeys(c for d in differential for c in d.get("citations") or []))
    by_id = {str(_as_dict(c).get("id")): _as_dict(c) for c in citations}
    return [
        {
            "id": cid,
            "doc_id": None if by_id[cid].get("doc_id") is None else str(by_id[cid]["doc_id"]),
            "title": None if by_id[cid].get("title") is None else str(by_id[cid]["title"])[:200],
        }
        for cid in cited
        if cid in by_id
    ]


# ---------------------------------------------------------------------------------------------------- VLM only
class VlmAnalyser:
    """The VLM and the bundle's image index, without the agent (see the module docstring).

    The differential is the similarity-weighted vote of the diagnoses of the ``k`` nearest known images; it
    is marked abstained when the vote's top share is under 0.5.
    """

    def __init__(self, spec: AnalyserSpec, *, k: int = 10) -> None:
        from vlm.registry import create_vlm
        from zebra.config import get_settings

        settings = get_settings()
        self.vlm = create_vlm(spec.vlm or settings.models.vlm, device=settings.models.device)
        self.spec = spec
        self.k = k
        self.rarity = _Rarity(spec.bundle or str(settings.bundle_dir))
        self.name = f"vlm({spec.vlm or settings.models.vlm})+image-index"
        self.notes: list[str] = []

    def analyse(self, item: WorkItem) -> Analysis:
        """Gate, anomaly, boxes, caption, change against the prior; rarity and differential from the index."""
        images = studies.pick_images(studies.load(item.study_path), 1)
        if not images:
            raise AnalyserError("The study holds no image.", hint="Check the worklist entry.")
        priors = studies.pick_images(studies.load(item.prior_path), 1) if item.prior_path else []
        result = self.vlm.analyze(images[0], prior=priors[0] if priors else None)
        current = result.current
        analysis = Analysis(
            anomaly_score=current.anomaly_score,
            gate_accepted=current.gate.accepted,
            gate_kind=current.gate.kind,
            ood_score=gate_ood(current.gate.scores),
            boxes=[b.to_dict() for b in current.boxes],
            caption=current.caption,
            image=studies.display_array(images[0]),
            heatmap=current.heatmap,
            analyser=self.name,
            notes=list(self.notes),
        )
        if result.change is not None:
            analysis.change_label = result.change.label
            analysis.change_confidence = result.change.confidence
            analysis.change_statement = result.change.statement
        hits = self.rarity.nearest(analysis.image, k=self.k) if current.gate.accepted else []
        if hits:
            analysis.nearest_similarity = _hit_similarity(hits[0])
            analysis.nearest_diagnosis = getattr(hits[0], "diagnosis", None)
            votes: dict[str, float] = {}
            for hit in hits:
                if getattr(hit, "diagnosis", None):
                    votes[hit.diagnosis] = votes.get(hit.diagnosis, 0.0) + max(
                        0.0, _hit_similarity(hit) or 0.0
                    )
            total = sum(votes.values())
            if total > 0:
                ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
                analysis.differential = [
                    {"diagnosis": d, "probability": round(v / total, 4), "citations": []} for d, v in ranked
                ]
        top = analysis.top_probability
        if not current.gate.accepted:
            analysis.abstained, analysis.abstain_reason = (
                True,
                current.gate.reason or "The input gate rejected the image.",
            )
        elif top is None or top < 0.5:
            analysis.abstained, analysis.abstain_reason = (
                True,
                "Similar known cases disagree on the diagnosis.",
            )
        return analysis
