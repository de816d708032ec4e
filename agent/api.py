"""The agent's Python API: :class:`Agent` (``ask`` a question about a study, keep sessions) and
:meth:`Agent.predict_case` for the evaluation harness."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from agent.answer import Answer
from agent.configuration import Configuration
from agent.errors import AgentConfigError, SessionNotFoundError
from agent.images import load_inputs
from agent.resources import AgentContext, Resources
from agent.state import turn_items

log = logging.getLogger(__name__)


class SearcherView:
    """An agent's resources with another searcher: per-run, so concurrent runs do not see each other's."""

    def __init__(self, resources: Resources, searcher: Any) -> None:
        self._resources = resources
        self._searcher = searcher

    def get_searcher(self) -> Any:
        """The replacement searcher."""
        return self._searcher

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resources, name)


class Agent:
    """The diagnostic agent (graph in :mod:`agent.graph`).

    Args:
        config: Options; default :meth:`Configuration.from_settings`.
        checkpointer: ``True`` for the default session store (:func:`agent.checkpoint.default_checkpointer`),
            ``None``/``False`` for none (every call is a fresh session), or a LangGraph checkpointer.
        searcher, vlm, reasoner, scorer, router: Backends to use instead of creating them from ``config``
            (tests, benchmarks).
    """

    def __init__(
        self,
        config: Configuration | None = None,
        *,
        checkpointer: Any = True,
        searcher: Any = None,
        vlm: Any = None,
        reasoner: Any = None,
        scorer: Any = None,
        router: Any = None,
    ) -> None:
        from agent.graph import build_graph

        self.config = config or Configuration.from_settings()
        self.resources = Resources(
            self.config, searcher=searcher, vlm=vlm, reasoner=reasoner, scorer=scorer, router=router
        )
        if checkpointer is True:
            from agent.checkpoint import default_checkpointer

            checkpointer = default_checkpointer()
        self.checkpointer = checkpointer or None
        self.graph = build_graph(self.config, checkpointer=self.checkpointer)

    def _config(self, thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id, **self.config.to_configurable()}}

    def run(
        self,
        question: str,
        *,
        images: Sequence[Any] = (),
        priors: Sequence[Any] = (),
        history: str | None = None,
        captions: Sequence[str] = (),
        thread_id: str | None = None,
        hidden: Any = None,
    ) -> tuple[Answer, dict[str, Any]]:
        """Like :meth:`ask`, also returning the final graph state.

        ``hidden``: what this run never sees (the "unseen disease" evaluation): a
        :class:`retrieval.hidden.Hidden` or diagnosis labels; other runs are unaffected.
        """
        thread_id = thread_id or uuid.uuid4().hex
        start = time.perf_counter()
        current = load_inputs(images, max_images=self.config.max_images, role="image")
        prior = load_inputs(priors, max_images=1, role="prior")
        load_s = time.perf_counter() - start
        resources: Any = self.resources
        if hidden:
            from retrieval.hidden import HiddenSearcher

            resources = SearcherView(self.resources, HiddenSearcher(self.resources.get_searcher(), hidden))
        ctx = AgentContext(resources=resources, images=current, priors=prior, thread_id=thread_id)
        state = self.graph.invoke(
            {"question": question or "", "history": history or "", "captions": [c for c in captions if c]},
            self._config(thread_id),
            context=ctx,
        )
        total = time.perf_counter() - start
        trace = turn_items(state, "trace")
        timings: dict[str, float] = {"load_inputs": round(load_s, 4)}
        for entry in trace:
            timings[entry["node"]] = round(timings.get(entry["node"], 0.0) + float(entry["seconds"]), 4)
        timings["total"] = round(total, 4)
        answer = Answer.from_dict(
            {**(state.get("answer") or {}), "thread_id": thread_id, "trace": trace, "timings": timings}
        )
        return answer, state

    def ask(
        self,
        question: str,
        *,
        images: Sequence[Any] = (),
        priors: Sequence[Any] = (),
        history: str | None = None,
        captions: Sequence[str] = (),
        thread_id: str | None = None,
    ) -> Answer:
        """Answers one question about a study.

        Args:
            question: The question (``""`` asks for the diagnosis).
            images: The current study: file paths (DICOM, NIfTI, PNG/JPEG, folders, zips), arrays, PIL images,
                or ``(name, image)`` pairs.
            priors: A prior study of the same patient (its first image is compared with the first current one).
            history: Clinical history.
            captions: Findings text or image captions given by the user.
            thread_id: Session id; a follow-up in the same session sees the earlier answers. A new id when
                ``None`` (returned in :attr:`Answer.thread_id`).

        Returns:
            The answer, with its differential, citations, findings, trace and timings.

        Raises:
            ZebraError subclasses: Unreadable inputs, a missing bundle, a failing reasoner server.
        """
        return self.run(
            question, images=images, priors=priors, history=history, captions=captions, thread_id=thread_id
        )[0]

    def session(self, thread_id: str) -> dict[str, Any]:
        """The stored session: its turns, the last answer and the full trace.

        Raises:
            AgentConfigError: When the agent keeps no sessions.
            SessionNotFoundError: When the thread has no checkpoint.
        """
        if self.checkpointer is None:
            raise AgentConfigError("This agent keeps no sessions.", hint="Create it with a checkpointer.")
        snapshot = self.graph.get_state({"configurable": {"thread_id": thread_id}})
        values = dict(snapshot.values or {})
        if not values:
            raise SessionNotFoundError(
                f"No session with thread id {thread_id!r}.", hint="Check the id printed by zebra ask."
            )
        return {
            "thread_id": thread_id,
            "turns": values.get("turns") or [],
            "answer": values.get("answer") or {},
            "trace": values.get("trace") or [],
        }

    # ------------------------------------------------------------------ evaluation harness
    def predict_case(
        self,
        case_id: str,
        records: Sequence[Any],
        dataset: Any | None,
        *,
        hidden: Any = None,
    ) -> dict[str, Any]:
        """One case of the evaluation harness (``eval.predictors.Predictor`` protocol), as the keyword
        arguments of ``eval.predictors.CasePrediction``.

        Inputs are what the harness left in ``records`` (clinical history, captions) and the images of
        ``dataset`` (``None`` when images are withheld). Every case runs in a fresh session.
        ``hidden``: see :meth:`run`.
        """
        histories = list(
            dict.fromkeys(r.clinical_history.strip() for r in records if r.clinical_history.strip())
        )
        captions = list(dict.fromkeys(r.caption_text.strip() for r in records if r.caption_text.strip()))
        images: list[tuple[str, Any]] = []
        if dataset is not None:
            for record in records:
                try:
                    images.append((record.filename, dataset.load_image(record)))
                except Exception as exc:  # one unreadable image costs only its own findings
                    log.warning("case %s: image %s unreadable: %s", case_id, record.filename, exc)
        if not (histories or captions or images):
            return {"abstained": True, "reason": "no input to reason from"}
        answer, state = self.run(
            "",
            images=images,
            history="\n".join(histories),
            captions=captions,
            thread_id=f"eval-{case_id}-{uuid.uuid4().hex[:8]}",
            hidden=hidden,
        )
        return prediction_from(answer, state)


def prediction_from(answer: Answer, state: dict[str, Any]) -> dict[str, Any]:
    """``CasePrediction`` keyword arguments from an answer and its final state."""
    from agent.anatomy import differential_regions
    from agent.evidence import imaged_region

    differential = state.get("differential") or []
    boxes: dict[str, list[list[float]]] = {}
    captions: dict[str, str] = {}
    for f in state.get("findings") or []:
        name = str(f.get("image"))
        if f.get("boxes"):
            boxes[name] = [
                [b["x1"], b["y1"], b["x2"], b["y2"], float(b.get("score") or 0.0)] for b in f["boxes"]
            ]
        if f.get("caption"):
            captions[name] = str(f["caption"])
    return {
        "diagnoses": [d["diagnosis"] for d in differential],
        "probabilities": [float(d["probability"]) for d in differential],
        "boxes": boxes,
        "captions": captions,
        "abstained": bool(answer.abstained),
        "reason": answer.abstain_reason,
        "extra": {
            "acr_codes": [(d.get("acr_codes") or [None])[0] for d in differential],
            "evidence": [d.get("citations", [])[:3] for d in differential],
            "evidence_docs": [
                [c.get("doc_id") for c in answer.citations if c.get("id") in (d.get("citations") or [])][:3]
                for d in differential
            ],
            "backoff": answer.backoff,
            "seconds": answer.timings.get("total"),
            # anatomical consistency (eval.scoring's region_consistent_top5)
            "imaged_region": imaged_region(state.get("findings") or []),
            "regions": differential_regions(state) or [],
        },
    }
