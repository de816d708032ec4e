"""``zebra bench agent``: end-to-end answer latency of the agent (builtin backends by default).

The first question loads every model (reported as ``cold_s``); the next ``n`` questions are timed, each in a
fresh session (thread) with the session store on, cycling through short clinical vignettes and question
kinds. Models are cached per process, so nothing reloads between questions.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from agent.api import Agent

VIGNETTES: tuple[tuple[str, str], ...] = (
    (
        "45-year-old woman with chronic headaches. Dural-based enhancing extra-axial mass with a dural tail.",
        "What is the likeliest diagnosis?",
    ),
    (
        "Progressive unilateral hearing loss and tinnitus. Enhancing mass in the internal auditory canal.",
        "What else could it be?",
    ),
    (
        "Child with ataxia and morning vomiting. Cystic cerebellar mass with an enhancing mural nodule.",
        "What is the diagnosis?",
    ),
    (
        "Young adult with optic neuritis. Periventricular ovoid white matter lesions perpendicular to the ventricles.",
        "What is the most likely diagnosis?",
    ),
    (
        "Fever and right lower quadrant pain. Dilated appendix with periappendiceal fat stranding on CT.",
        "Diagnose this case.",
    ),
    (
        "Elderly man after a fall on anticoagulation. Crescentic extra-axial collection over the convexity.",
        "What does this show?",
    ),
    (
        "Neck pain after diving. Fracture of the ring of C1 with lateral mass displacement.",
        "What is the diagnosis?",
    ),
    (
        "Chronic cough and weight loss. Spiculated upper lobe nodule with hilar adenopathy.",
        "Which condition best explains these findings?",
    ),
)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def run_bench(agent: Agent, n: int = 20, *, images: Sequence[Any] = ()) -> dict[str, Any]:
    """Times ``n`` questions after one warm-up (module docstring)."""
    start = time.perf_counter()
    agent.ask(VIGNETTES[0][1], history=VIGNETTES[0][0], images=images)
    cold = time.perf_counter() - start
    totals: list[float] = []
    per_node: dict[str, list[float]] = {}
    abstained = 0
    for i in range(n):
        history, question = VIGNETTES[i % len(VIGNETTES)]
        t0 = time.perf_counter()
        answer = agent.ask(question, history=history, images=images)
        totals.append(time.perf_counter() - t0)
        abstained += answer.abstained
        for node, secs in answer.timings.items():
            if node != "total":
                per_node.setdefault(node, []).append(secs)
    return {
        "n": n,
        "p50_s": round(_pct(totals, 0.5), 4),
        "p95_s": round(_pct(totals, 0.95), 4),
        "mean_s": round(statistics.fmean(totals), 4) if totals else 0.0,
        "max_s": round(max(totals), 4) if totals else 0.0,
        "cold_s": round(cold, 3),
        "per_node_p50_s": {k: round(_pct(v, 0.5), 4) for k, v in per_node.items()},
        "abstained": abstained,
        "images_per_question": len(images),
        "vlm": agent.config.vlm,
        "reasoner": agent.config.reasoner,
        "bundle": agent.config.bundle,
        "cpus": os.cpu_count(),
        "vlm_available": agent.resources.vlm is not None if images else None,
    }
