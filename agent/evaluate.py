"""``zebra agent eval``: top-1/top-5 diagnosis accuracy of the agent against the retrieval-only baseline.

Cases come from a NOVA data set (``--data``: images available) or straight from MedPix 2.0 (``--medpix`` and
``--split``: every case of the split, text inputs, images when shipped as PNG). Input settings:

- ``history``: clinical history only;
- ``text``: clinical history + captions (no image);
- ``images``: images + clinical history (no caption);
- ``dialogue``: images + clinical history, then, when the agent asks questions, one reply made of the
  sentences of the case's own ``Findings`` that answer them (:func:`agent.questions.simulated_reply`); the
  second turn's differential is scored;
- ``all``: images + clinical history + captions;
- ``report``: ``History`` + ``Findings`` of the case report (the protocol of ``zebra eval retrieval``; MedPix only).

Region consistency: for cases with an accepted image, the share of top-``k`` entries whose region
(:func:`agent.anatomy.candidate_region`) is consistent with the imaged region (the head), i.e. not known to
lie only elsewhere; ``region_known_head`` is the stricter share known to be of the head.

Literature setting: by default the bundle holds every document it was built with, including those of the
evaluated cases' diseases ("the literature covers the disease"). With ``unseen=True`` (``--unseen``), per case,
every chunk and image whose diagnosis label the scoring matcher matches to the gold diagnosis is hidden from the
agent and the baseline alike (:class:`retrieval.hidden.HiddenSearcher`): "the disease is in no document". Each
row records how many documents were hidden.

A case counts as a top-``j`` hit when one of the first ``j`` diagnoses is
:func:`retrieval.diagnosis.same_diagnosis` as the gold label. The baseline aggregates the ``n_hits`` best
documents of the same text query (history, plus captions when the setting has them) into candidates
(:mod:`retrieval.aggregate`), like the evaluation harness's ``retrieval`` predictor. Abstentions still count
their differential for accuracy; the selective accuracy is the top-1 accuracy of the cases not abstained on.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.anatomy import differential_regions
from agent.api import Agent, prediction_from
from agent.errors import AgentConfigError
from retrieval.diagnosis import DiagnosisMatcher
from retrieval.hidden import Hidden, HiddenSearcher, diagnosis_labels, documents_of_cases

log = logging.getLogger(__name__)

SETTINGS: dict[str, tuple[bool, bool, bool]] = {
    # name: (history, captions, images)
    "history": (True, False, False),
    "text": (True, True, False),
    "images": (True, False, True),
    # images + history, then one simulated reply to the agent's questions (agent.questions.simulated_reply)
    "dialogue": (True, False, True),
    "all": (True, True, True),
    # the retrieval evaluation's protocol (History + Findings of the report), MedPix cases only
    "report": (True, False, False),
}


@dataclass
class EvalCase:
    """One evaluation case: inputs, image loaders and the gold label."""

    case_id: str
    history: str
    captions: list[str]
    gold: str
    images: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)
    findings: str = ""


def cases_from_nova(path: str | Path) -> list[EvalCase]:
    """Cases of a NOVA data set (gold = ``final_diagnosis``)."""
    from zebra_datasets import read_nova

    dataset = read_nova(path)
    out = []
    for case_id, records in dataset.by_case().items():
        gold = next((r.final_diagnosis for r in records if r.final_diagnosis), "")
        if not gold:
            continue
        histories = list(
            dict.fromkeys(r.clinical_history.strip() for r in records if r.clinical_history.strip())
        )
        captions = list(dict.fromkeys(r.caption_text.strip() for r in records if r.caption_text.strip()))
        images = [(r.filename, (lambda r=r: dataset.load_image(r))) for r in records]
        out.append(EvalCase(str(case_id), "\n".join(histories), captions, gold, images))
    return out


def cases_from_medpix(root: str | Path, split: str = "dev") -> list[EvalCase]:
    """Every case of a MedPix split (inputs as in the NOVA conversion; images when shipped as PNG)."""
    from agent.fit import read_medpix_cases
    from zebra_intake import load_study

    def loader(path: str) -> Callable[[], Any]:
        return lambda: load_study(path).images[0].display

    return [
        EvalCase(
            c.case_id,
            c.history,
            c.captions,
            c.gold,
            [(Path(p).name, loader(p)) for p in c.images],
            c.findings,
        )
        for c in read_medpix_cases(root, split)
    ]


def _rank(labels: Sequence[str], gold: str, matcher: DiagnosisMatcher) -> int | None:
    return next((i for i, label in enumerate(labels, start=1) if matcher.same(label, gold)), None)


def baseline(searcher: Any, query: str, *, n_hits: int = 30, k: int = 5) -> list[str]:
    """Retrieval-only diagnoses: the aggregated candidates of the ``n_hits`` best documents."""
    from retrieval.aggregate import aggregate_diagnoses

    if not query.strip():
        return []
    hits = searcher.search_text(query, k=n_hits, mode="hybrid", fetch_k=max(50, n_hits))
    return [c.label for c in aggregate_diagnoses(hits, top_n=k)]


def evaluate(
    agent: Agent,
    cases: Sequence[EvalCase],
    *,
    settings: Iterable[str] = ("text",),
    k: int = 5,
    details_path: str | Path | None = None,
    progress: bool = False,
    unseen: bool = False,
    leave_case_out: bool = False,
) -> dict[str, Any]:
    """Runs the protocol of the module docstring (``unseen``: the "disease in no document" setting;
    ``leave_case_out``: each case's own case report and images are hidden, as in the reasoner's fit, so cases
    indexed in the bundle, e.g. MedPix train, can be evaluated).

    Returns:
        ``{"k", "settings": {name: {"agent": {...}, "baseline": {...}, "n_cases"}}, "_rows": {name: rows}}``
        (the per-case rows, for paired comparisons by the caller).
    """
    settings = list(settings)
    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        raise AgentConfigError(f"Unknown setting(s) {bad}.", hint=f"Use: {', '.join(SETTINGS)}.")
    matcher = DiagnosisMatcher()
    searcher = agent.resources.get_searcher()
    labels = diagnosis_labels(searcher) if unseen else []
    linked = documents_of_cases(searcher) if unseen else {}
    talker = _with_memory(agent) if "dialogue" in settings else agent
    details = open(details_path, "w", encoding="utf-8") if details_path else None  # noqa: SIM115
    results: dict[str, Any] = {}
    per_setting: dict[str, list[dict[str, Any]]] = {}
    try:
        for setting in settings:
            use_history, use_captions, use_images = SETTINGS[setting]
            pool = [c for c in cases if c.images] if use_images else list(cases)
            rows = []
            iterator: Iterable[EvalCase] = pool
            if progress:
                from tqdm import tqdm

                iterator = tqdm(pool, desc=f"agent eval ({setting})", unit="case")
            for case in iterator:
                history = case.history if use_history else ""
                captions = case.captions if use_captions else []
                if setting == "report":
                    # History only (no Exam), as the retrieval evaluation queries
                    history = case.history.split("\nExam:")[0] if not case.history.startswith("Exam:") else ""
                    captions = [case.findings] if case.findings else []
                images = []
                if use_images:
                    for name, load in case.images[: agent.config.max_images]:
                        try:
                            images.append((name, load()))
                        except Exception as exc:  # an unreadable image costs only itself
                            log.warning("case %s: image %s unreadable: %s", case.case_id, name, exc)
                hidden = _hidden_of(
                    case, labels, linked, matcher, unseen=unseen, leave_case_out=leave_case_out
                )
                view = HiddenSearcher(searcher, hidden) if hidden else searcher
                start = time.perf_counter()
                runner = talker if setting == "dialogue" else agent
                answer, state = runner.run(
                    "", images=images, history=history, captions=captions, hidden=hidden
                )
                asked = [q.get("topic", "") for q in answer.questions] if setting == "dialogue" else []
                reply = ""
                if asked:
                    from agent.questions import simulated_reply

                    reply = simulated_reply(case.findings, asked)
                    if reply:
                        answer, state = runner.run(
                            reply,
                            images=images,
                            history=history,
                            captions=captions,
                            thread_id=answer.thread_id,
                            hidden=hidden,
                        )
                seconds = time.perf_counter() - start
                pred = prediction_from(answer, state)
                regions = differential_regions(state, k)
                base = baseline(view, "\n".join([history, *captions]), n_hits=agent.config.n_hits, k=k)
                row = {
                    "setting": setting,
                    "case_id": case.case_id,
                    "gold": case.gold,
                    "agent_rank": _rank(pred["diagnoses"][:k], case.gold, matcher),
                    "baseline_rank": _rank(base, case.gold, matcher),
                    "abstained": pred["abstained"],
                    "backoff": (pred["extra"].get("backoff") or {}).get("name"),
                    "top_probability": pred["probabilities"][0] if pred["probabilities"] else None,
                    "diagnoses": pred["diagnoses"][:k],
                    "baseline": base,
                    "seconds": round(seconds, 3),
                    "notes": answer.notes,
                    "regions": regions,
                    "asked": asked,
                    "replied": bool(reply),
                }
                if hidden:
                    row["hidden"] = view.removed()
                rows.append(row)
                if details:
                    details.write(json.dumps(row) + "\n")
            results[setting] = summarize(rows, k)
            per_setting[setting] = rows
    finally:
        if details:
            details.close()
    return {"k": k, "settings": results, "_rows": per_setting}


def _hidden_of(
    case: EvalCase,
    labels: Sequence[str],
    linked: dict[str, set[str]],
    matcher: DiagnosisMatcher,
    *,
    unseen: bool,
    leave_case_out: bool,
) -> Hidden | None:
    """What one case's runs must not see (``None``: everything may be seen)."""
    if not (unseen or leave_case_out):
        return None
    doc_ids = {f"medpix:case/{case.case_id}"} if leave_case_out else set()
    matched: tuple[str, ...] = ()
    if unseen:
        matched = tuple(label for label in labels if matcher.same(label, case.gold))
        doc_ids |= set(linked.get(case.case_id, ()))
    return Hidden(labels=matched, doc_ids=tuple(sorted(doc_ids)), case_ids=(case.case_id,))


def _with_memory(agent: Agent) -> Agent:
    """``agent`` itself when it keeps sessions, else a copy sharing its backends with an in-memory session
    store (the dialogue's second turn must see the first)."""
    if agent.checkpointer is not None:
        return agent
    import copy

    from langgraph.checkpoint.memory import InMemorySaver

    from agent.graph import build_graph

    talker = copy.copy(agent)
    talker.checkpointer = InMemorySaver()
    talker.graph = build_graph(agent.config, checkpointer=talker.checkpointer)
    return talker


def _region_share(rows: Sequence[dict[str, Any]], *, strict: bool = False) -> float | None:
    entries = [r for row in rows for r in (row.get("regions") or [])]
    if not entries:
        return None
    ok = sum(1 for r in entries if (r == "head" if strict else r != "other"))
    return round(ok / len(entries), 4)


def summarize(rows: Sequence[dict[str, Any]], k: int = 5) -> dict[str, Any]:
    """Accuracy, abstention, region consistency and latency of per-case rows."""
    n = len(rows)

    def rate(key: str, j: int) -> float:
        return round(sum(1 for r in rows if r[key] is not None and r[key] <= j) / n, 4) if n else 0.0

    answered = [r for r in rows if not r["abstained"]]
    secs = [r["seconds"] for r in rows]
    return {
        "n_cases": n,
        "agent": {
            "top1": rate("agent_rank", 1),
            f"top{k}": rate("agent_rank", k),
            "abstention_rate": round(1 - len(answered) / n, 4) if n else 0.0,
            "selective_top1": round(sum(1 for r in answered if r["agent_rank"] == 1) / len(answered), 4)
            if answered
            else None,
            "backoff_rate": round(sum(1 for r in rows if r["backoff"]) / n, 4) if n else 0.0,
            "seconds_p50": round(statistics.median(secs), 3) if secs else None,
            "region_consistent": _region_share(rows),
            "region_known_head": _region_share(rows, strict=True),
            "n_with_accepted_image": sum(1 for r in rows if r.get("regions") is not None),
            "asked_rate": round(sum(1 for r in rows if r.get("asked")) / n, 4) if n else 0.0,
            "replied_rate": round(sum(1 for r in rows if r.get("replied")) / n, 4) if n else 0.0,
        },
        "baseline": {"top1": rate("baseline_rank", 1), f"top{k}": rate("baseline_rank", k)},
        **({"unseen": _hidden_summary(rows)} if any("hidden" in r for r in rows) else {}),
    }


def _hidden_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the "disease in no document" setting hid, over the rows."""
    docs = [int((r.get("hidden") or {}).get("documents", 0)) for r in rows]
    return {
        "documents_hidden_mean": round(statistics.fmean(docs), 3) if docs else None,
        "documents_hidden_min": min(docs) if docs else None,
        "cases_with_nothing_hidden": [r["case_id"] for r, d in zip(rows, docs, strict=True) if d == 0],
    }
