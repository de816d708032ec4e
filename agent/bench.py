"""``zebra bench agent``: end-to-end answer latency of the agent (builtin backends by default).

The first question loads every model (reported as ``cold_s``); the next ``n`` questions are timed, each in a
fresh session (thread) with the session store on, cycling through short clinical vignettes and question
kinds. Models are cached per process, so nothing reloads between questions.

:func:`compare_text_backends` puts the torch and onnx text encoders side by side on the agent's bundle
(chunks per second, query-embedding latency, mean cosine, top-10 overlap in the bundle's own index).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from agent.api import Agent

log = logging.getLogger(__name__)

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


def compare_text_backends(
    agent: Agent, *, chunks: int = 512, batch_size: int = 64, repeats: int = 1, seed: int = 0
) -> dict[str, Any]:
    """torch vs onnx on the agent's bundle: ``chunks`` sampled chunk texts and the vignette questions.

    The top-10 overlap searches the bundle's own FAISS index with each backend's query vectors, i.e. what
    a question retrieves when the bundle is queried with the other backend. Bundles built with an encoder
    that has no torch/onnx choice (the hashing test embedder) are skipped with the reason.
    """
    import numpy as np

    from index_builder.bench import compare_encoders

    bundle = agent.resources.get_searcher().bundle
    info = bundle.manifest.get("text_embedder") or {}
    spec = str(info.get("spec", ""))
    if str(info.get("backend") or "torch") not in ("torch", "onnx") or spec.split(":")[0] not in (
        "builtin",
        "st",
        "hf",
    ):
        return {"skipped": f"the bundle's text encoder {spec!r} has no torch/onnx backends"}
    texts = bundle.chunks["text"].tolist()
    if len(texts) > chunks:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), size=chunks, replace=False))]
    queries = [f"{history} {question}" for history, question in VIGNETTES]

    def search(vectors: np.ndarray, k: int) -> list[list[int]]:
        return [[vid for vid, _ in row] for row in bundle.search_vectors(vectors, k)]

    result = compare_encoders(
        texts, queries, spec=spec, batch_size=batch_size, repeats=repeats, search=search
    )
    result["bundle_backend"] = str(info.get("backend") or "torch")
    return result
