"""The :class:`Predictor` protocol, the prediction record and the predictor registry.

A predictor answers one case at a time: ``predict_case(case_id, records, dataset)`` gets all rows of the case
(with the gold labels and every input not selected by ``--inputs`` removed, see :mod:`eval.harness`) and the
data set view (``None`` when images are withheld) and returns a :class:`CasePrediction`.

Registered predictors (``PREDICTORS.create(spec, **options)``; options: ``bundle``, ``vlm``, ``reasoner``,
``inputs``, ``ablate``):

- ``retrieval[:key=value,...]``: :class:`RetrievalPredictor`, a :class:`retrieval.searcher.Searcher` over the
  index bundle (``bundle``). Query = clinical history + captions (those selected by ``--inputs``);
  diagnoses = the top 5 aggregated candidates (:mod:`retrieval.aggregate`) of the ``n_hits`` best documents;
  probability of a candidate = its aggregated score over the sum of all candidates' scores (a share of the
  evidence, not a calibrated probability). With the image input and a bundle with an image index, each image's
  caption is the caption of its nearest indexed image. Keys: ``mode`` (hybrid/dense/bm25), ``n_hits`` (30),
  ``abstain`` (abstain when the top probability is below this, default 0), ``verify`` (1: check bundle hashes).
- ``constant[:NAME]``: always ``NAME`` (default ``"glioblastoma"``) with probability 0.5, no boxes, no
  captions; a floor to beat.
- ``oracle``: the gold answer (for tests of the harness only; it reads the labels).
- ``agent``: the LangGraph diagnostic agent (:mod:`agent`), a fresh session per case.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from eval.errors import EvalConfigError
from zebra.registry import Registry

if TYPE_CHECKING:
    from zebra_datasets import NovaDataset, NovaRecord

log = logging.getLogger(__name__)

#: Inputs a predictor may receive.
INPUTS: tuple[str, ...] = ("image", "history", "caption")
#: Things that can be ablated: the inputs and the retrieval step of an agent.
ABLATIONS: tuple[str, ...] = (*INPUTS, "retrieval")
#: Tasks a predictor may answer; metrics of a task it does not declare are null.
TASKS: tuple[str, ...] = ("localisation", "captioning", "diagnosis")
#: Diagnoses kept per case.
TOP_K = 5


@dataclass
class CasePrediction:
    """A predictor's answer for one case.

    Attributes:
        diagnoses: Ranked diagnoses, best first (at most :data:`TOP_K` are kept).
        probabilities: Confidence of each diagnosis in ``[0, 1]`` (same length, or empty when unknown).
        boxes: Image file name -> ``[[x1, y1, x2, y2, score], ...]`` in pixels.
        captions: Image file name -> generated caption.
        abstained: Whether the predictor declines to commit to a diagnosis.
        reason: Why it abstained (or failed), or ``None``.
        extra: Further JSON-serialisable details (e.g. ``acr_codes`` parallel to ``diagnoses``).
    """

    diagnoses: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    boxes: dict[str, list[list[float]]] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    abstained: bool = False
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validated(self) -> CasePrediction:
        """A cleaned copy: top-:data:`TOP_K`, probabilities clipped to ``[0, 1]``, well-formed boxes.

        Raises:
            EvalConfigError: When probabilities and diagnoses differ in length or a box is malformed.
        """
        diagnoses = [str(d) for d in self.diagnoses][:TOP_K]
        probs = [float(p) for p in self.probabilities]
        if probs and len(probs) < len(diagnoses):
            raise EvalConfigError(
                f"{len(self.diagnoses)} diagnoses but {len(probs)} probabilities.",
                hint="Give one probability per diagnosis, or none.",
            )
        probs = [min(max(p, 0.0), 1.0) if math.isfinite(p) else 0.0 for p in probs[: len(diagnoses)]]
        boxes: dict[str, list[list[float]]] = {}
        for name, items in (self.boxes or {}).items():
            rows = []
            for box in items:
                if len(box) not in (4, 5):
                    raise EvalConfigError(
                        f"Box {box!r} of {name} is not [x1, y1, x2, y2, score].", hint="Fix the predictor."
                    )
                x1, y1, x2, y2 = (float(v) for v in box[:4])
                score = float(box[4]) if len(box) == 5 else 1.0
                rows.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2), score])
            boxes[str(name)] = rows
        return CasePrediction(
            diagnoses=diagnoses,
            probabilities=probs,
            boxes=boxes,
            captions={str(k): str(v) for k, v in (self.captions or {}).items() if v is not None},
            abstained=bool(self.abstained),
            reason=None if self.reason is None else str(self.reason),
            extra=dict(self.extra or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


@runtime_checkable
class Predictor(Protocol):
    """Answers one case at a time (module docstring).

    Attributes:
        name: Short name recorded in the run metadata.
        tasks: The tasks answered (subset of :data:`TASKS`).
    """

    name: str
    tasks: frozenset[str]

    def predict_case(
        self, case_id: str, records: list[NovaRecord], dataset: NovaDataset | None
    ) -> CasePrediction:
        """Predicts one case from all of its rows (no state may carry over from earlier cases)."""
        ...


PREDICTORS: Registry[Predictor] = Registry("predictor")


def parse_options(arg: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> ``{"a": "1", "b": "x"}``.

    Raises:
        EvalConfigError: For an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in (arg or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise EvalConfigError(
                f"Predictor option {item!r} is not key=value.", hint="Use e.g. retrieval:n_hits=20."
            )
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------------------------------- constant
class ConstantPredictor:
    """Always the same diagnosis (module docstring)."""

    tasks = frozenset({"diagnosis"})

    def __init__(self, diagnosis: str = "glioblastoma", probability: float = 0.5) -> None:
        self.diagnosis = diagnosis
        self.probability = probability
        self.name = f"constant:{diagnosis}"

    def predict_case(
        self, case_id: str, records: list[NovaRecord], dataset: NovaDataset | None
    ) -> CasePrediction:
        return CasePrediction(diagnoses=[self.diagnosis], probabilities=[self.probability])


@PREDICTORS.register("constant", help="Always the same diagnosis (constant:NAME); a floor to beat.")
def _constant(arg: str = "", **_: object) -> Predictor:
    return ConstantPredictor(arg or "glioblastoma")


# ---------------------------------------------------------------------------------------------- oracle
class OraclePredictor:
    """Answers with the gold labels (harness tests only). The harness hands it the labelled data set through
    :meth:`set_gold` because predictors otherwise never see labels."""

    name = "oracle"
    tasks = frozenset(TASKS)
    needs_gold = True

    def __init__(self) -> None:
        self._gold: dict[str, list[NovaRecord]] | None = None

    def set_gold(self, dataset: NovaDataset) -> None:
        """Receives the unredacted data set."""
        self._gold = dataset.by_case()

    def predict_case(
        self, case_id: str, records: list[NovaRecord], dataset: NovaDataset | None
    ) -> CasePrediction:
        if self._gold is None:
            raise EvalConfigError("The oracle predictor has no gold labels.", hint="Run it through run_eval.")
        gold = self._gold[case_id]
        truth = next((r.final_diagnosis for r in gold if r.final_diagnosis), "")
        return CasePrediction(
            diagnoses=[truth] if truth else [],
            probabilities=[1.0] if truth else [],
            boxes={r.filename: [[*b.xyxy(), 1.0] for b in r.gold_boxes] for r in gold},
            captions={r.filename: r.caption_text for r in gold if r.caption_text},
            abstained=not truth,
            reason=None if truth else "no gold diagnosis",
            extra={"acr_codes": [gold[0].meta.get("acr_code")]} if gold[0].meta.get("acr_code") else {},
        )


@PREDICTORS.register("oracle", help="Gold answers (harness tests only).")
def _oracle(arg: str = "", **_: object) -> Predictor:
    return OraclePredictor()


# ---------------------------------------------------------------------------------------------- agent
class AgentPredictor:
    """The LangGraph diagnostic agent (``agent.Agent``), a fresh session per case."""

    name = "agent"
    tasks = frozenset(TASKS)
    #: Accepts ``hidden`` (the "unseen disease" setting, :mod:`eval.unseen`).
    supports_hiding = True

    def __init__(self, agent: Any) -> None:
        self._agent = agent

    @property
    def searcher(self) -> Any:
        """The agent's searcher (opened on first use)."""
        return self._agent.resources.get_searcher()

    def predict_case(
        self,
        case_id: str,
        records: list[NovaRecord],
        dataset: NovaDataset | None,
        *,
        hidden: Any = None,
    ) -> CasePrediction:
        return CasePrediction(**self._agent.predict_case(case_id, records, dataset, hidden=hidden))


@PREDICTORS.register(
    "agent", help="The LangGraph diagnostic agent (--vlm, --reasoner; options as KEY=VALUE,...)."
)
def _agent(
    arg: str = "",
    *,
    bundle: str | Path | None = None,
    vlm: str | None = None,
    reasoner: str | None = None,
    ablate: Sequence[str] = (),
    **_: object,
) -> Predictor:
    from agent.api import Agent
    from agent.configuration import Configuration

    config = Configuration.from_settings(
        bundle=None if bundle is None else str(bundle),
        vlm=vlm,
        reasoner=reasoner,
        use_retrieval="retrieval" not in ablate,
        **parse_options(arg),
    )
    # Fail the whole run up front rather than every case with the same error.
    if config.use_retrieval and config.bundle and not (Path(config.bundle) / "manifest.json").is_file():
        raise EvalConfigError(
            f"Index bundle {config.bundle} does not exist.",
            hint="Build one with `zebra setup` or `zebra index build`, or pass --bundle DIR.",
        )
    return AgentPredictor(Agent(config, checkpointer=None))


# ---------------------------------------------------------------------------------------------- retrieval
def _case_text(records: Sequence[NovaRecord]) -> tuple[str, list[str]]:
    histories = list(dict.fromkeys(r.clinical_history.strip() for r in records if r.clinical_history.strip()))
    captions = list(dict.fromkeys(r.caption_text.strip() for r in records if r.caption_text.strip()))
    return "\n".join(histories), captions


class RetrievalPredictor:
    """Diagnoses by retrieval and aggregation over an index bundle (module docstring).

    Args:
        bundle: Bundle folder.
        mode: Search mode.
        n_hits: Documents aggregated.
        abstain_below: Abstain when the top probability is below this.
        verify: Check the bundle's SHA-256 sums on opening.
        searcher: A ready :class:`retrieval.searcher.Searcher` (tests); opened from ``bundle`` otherwise.
    """

    name = "retrieval"
    #: Accepts ``hidden`` (the "unseen disease" setting, :mod:`eval.unseen`).
    supports_hiding = True

    def __init__(
        self,
        bundle: str | Path | None = None,
        *,
        mode: str = "hybrid",
        n_hits: int = 30,
        abstain_below: float = 0.0,
        verify: bool = True,
        searcher: Any | None = None,
    ) -> None:
        from retrieval.searcher import MODES, Searcher

        if mode not in MODES:
            raise EvalConfigError(f"Unknown retrieval mode {mode!r}.", hint=f"Use one of {', '.join(MODES)}.")
        if searcher is None:
            if bundle is None:
                raise EvalConfigError(
                    "The retrieval predictor needs an index bundle.", hint="Pass --bundle DIR."
                )
            if not Path(bundle).is_dir():
                from zebra.errors import NotFoundError

                raise NotFoundError(
                    f"Index bundle {bundle} does not exist.",
                    hint="Build one with `zebra index build` or pass --bundle DIR.",
                )
            searcher = Searcher(bundle, verify=verify)
        self.searcher = searcher
        self.mode = mode
        self.n_hits = n_hits
        self.abstain_below = abstain_below
        self.bundle = str(bundle) if bundle is not None else None
        self.has_images = getattr(searcher.bundle, "image_index", None) is not None
        self.tasks = frozenset({"diagnosis", "captioning"} if self.has_images else {"diagnosis"})

    def predict_case(
        self,
        case_id: str,
        records: list[NovaRecord],
        dataset: NovaDataset | None,
        *,
        hidden: Any = None,
    ) -> CasePrediction:
        from retrieval.aggregate import aggregate_diagnoses
        from retrieval.hidden import HiddenSearcher

        searcher = HiddenSearcher(self.searcher, hidden) if hidden else self.searcher
        history, captions = _case_text(records)
        query = "\n".join(part for part in (history, *captions) if part)
        out_captions = self._captions(records, dataset, searcher)
        if not query:
            return CasePrediction(
                captions=out_captions, abstained=True, reason="no text input to search with"
            )
        hits = searcher.search_text(query, k=self.n_hits, mode=self.mode, fetch_k=max(50, self.n_hits))
        candidates = aggregate_diagnoses(hits, top_n=None)
        if not candidates:
            return CasePrediction(captions=out_captions, abstained=True, reason="no retrieved diagnosis")
        total = sum(max(c.score, 0.0) for c in candidates) or 1.0
        top = candidates[:TOP_K]
        probs = [max(c.score, 0.0) / total for c in top]
        meta_of = {h.doc_id: h.meta for h in hits}
        acr = [
            next(
                (
                    meta_of.get(ev.doc_id, {}).get("acr_code")
                    for ev in c.evidence
                    if meta_of.get(ev.doc_id, {}).get("acr_code")
                ),
                None,
            )
            for c in top
        ]
        abstain = probs[0] < self.abstain_below
        return CasePrediction(
            diagnoses=[c.label for c in top],
            probabilities=probs,
            captions=out_captions,
            abstained=abstain,
            reason=f"top probability {probs[0]:.3f} < {self.abstain_below}" if abstain else None,
            extra={"acr_codes": acr, "evidence": [[e.doc_id for e in c.evidence[:3]] for c in top]},
        )

    def _captions(
        self, records: Sequence[NovaRecord], dataset: NovaDataset | None, searcher: Any
    ) -> dict[str, str]:
        if dataset is None or not self.has_images:
            return {}
        out: dict[str, str] = {}
        for record in records:
            try:
                image = dataset.load_image(record)
            except Exception as exc:  # a missing image only costs its caption
                log.warning("case %s: image %s unreadable: %s", record.case_id, record.filename, exc)
                continue
            hits = searcher.search_image(image, k=5)
            caption = next((h.caption for h in hits if h.caption), None)
            if caption:
                out[record.filename] = caption
        return out


@PREDICTORS.register("retrieval", help="Searcher over --bundle: diagnoses = aggregated retrieved candidates.")
def _retrieval(
    arg: str = "", *, bundle: str | Path | None = None, ablate: Sequence[str] = (), **_: object
) -> Predictor:
    if "retrieval" in ablate:
        raise EvalConfigError(
            "The retrieval predictor cannot run with retrieval ablated.",
            hint="Drop 'retrieval' from --ablate.",
        )
    opts: Mapping[str, str] = parse_options(arg)
    unknown = set(opts) - {"mode", "n_hits", "abstain", "verify"}
    if unknown:
        raise EvalConfigError(
            f"Unknown retrieval predictor option(s): {', '.join(sorted(unknown))}.",
            hint="Known: mode, n_hits, abstain, verify.",
        )
    try:
        return RetrievalPredictor(
            bundle,
            mode=opts.get("mode", "hybrid"),
            n_hits=int(opts.get("n_hits", 30)),
            abstain_below=float(opts.get("abstain", 0.0)),
            verify=opts.get("verify", "1") not in ("0", "false", "no"),
        )
    except ValueError as exc:
        raise EvalConfigError(
            f"Bad retrieval predictor option: {exc}.", hint="n_hits is an integer, abstain a number."
        ) from exc


def create_predictor(spec: str | Predictor, **options: Any) -> Predictor:
    """A predictor from a registry spec (a predictor passes through).

    Raises:
        BackendNotFoundError: Unknown name (lists the registered ones).
    """
    if not isinstance(spec, str):
        return spec
    return PREDICTORS.create(spec, **options)
