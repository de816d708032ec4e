"""``retrieve``: text and image evidence for the planned queries; ``literature``: passages about a named
condition."""

from __future__ import annotations

from typing import Any

from agent.configuration import Configuration
from agent.evidence import retrieve as run_retrieval
from agent.evidence import text_item
from agent.nodes.common import note, traced
from agent.resources import AgentContext
from agent.state import AgentState

#: Document kinds that count as literature (general disease knowledge rather than single cases).
LITERATURE_KINDS: tuple[str, ...] = ("disease_discussion", "phenotype_profile", "literature", "text")
#: Passages returned by a literature question.
LITERATURE_K = 5


@traced("retrieve", reads=("queries",))
def retrieve(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Runs the planned text queries (fused) and the image queries (image -> images, image -> text)."""
    queries = state.get("queries") or []
    if not cfg.use_retrieval:
        return {
            "evidence": [],
            "image_evidence": [],
            "notes": [note(state, "retrieve", "Retrieval is switched off (ablation).")],
        }
    text_queries = [q for q in queries if q.get("text")]
    image_indices = [int(q["index"]) for q in queries if "image" in q]
    images = [ctx.images[i][1] for i in image_indices if i < len(ctx.images)]
    if not text_queries and not images:
        return {"evidence": [], "image_evidence": []}
    pending = ctx.resources.knowledge_base_pending()
    if pending is not None:
        return {
            "evidence": [],
            "image_evidence": [],
            "kb_pending": pending,
            "notes": [note(state, "retrieve", f"The knowledge base is not ready: {pending}.")],
        }
    searcher = ctx.resources.get_searcher()
    _embed_queries_once(searcher, [q["text"] for q in text_queries], cfg.search_mode)
    if len(images) > 1:
        _embed_images_once(searcher, images)
    evidence, image_evidence, texts = run_retrieval(
        searcher,
        text_queries,
        images,
        n_hits=cfg.n_hits,
        image_k=cfg.image_k,
        mode=cfg.search_mode,
    )
    update: dict[str, Any] = {"evidence": evidence, "image_evidence": image_evidence}
    if texts:
        update["notes"] = [note(state, "retrieve", t) for t in texts]
    return update


def _embed_queries_once(searcher: Any, texts: list[str], mode: str) -> None:
    """Embeds the turn's text queries in one encoder batch; the searches that follow reuse the vectors."""
    embed = getattr(searcher, "embed_queries", None)
    if embed is None or len(texts) < 2 or str(mode).lower() == "bm25":
        return
    from retrieval.errors import QueryError

    try:
        embed(texts)
    except QueryError:  # the per-query searches report it
        return


def _embed_images_once(searcher: Any, images: list[Any]) -> None:
    """Embeds the study's images in one batch; the image -> image and image -> text searches that follow
    find them in the searcher's query cache instead of running the image tower once per image and search."""
    embed = getattr(searcher, "embed_query_images", None)
    if embed is None or getattr(searcher.bundle, "image_index", None) is None:
        return
    from retrieval.errors import ImageInputError

    try:
        embed(images)
    except ImageInputError:  # the per-image searches report it
        return


@traced("literature", reads=("intent", "differential"))
def literature(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Passages about the condition named in the question (or the current primary diagnosis)."""
    from retrieval.filters import Filters

    intent = state.get("intent") or {}
    topic = intent.get("topic")
    differential = state.get("differential") or []
    if not topic and differential:
        topic = differential[0]["diagnosis"]
    if not topic:
        return {
            "literature": [],
            "notes": [note(state, "literature", "No condition named, and no earlier diagnosis to look up.")],
        }
    pending = ctx.resources.knowledge_base_pending()
    if pending is not None:
        return {
            "literature": [],
            "notes": [note(state, "literature", f"The knowledge base is not ready: {pending}.")],
        }
    searcher = ctx.resources.get_searcher()
    hits = searcher.search_text(
        topic, k=LITERATURE_K, mode=cfg.search_mode, filters=Filters(kind=LITERATURE_KINDS)
    )
    if not hits:
        hits = searcher.search_text(topic, k=LITERATURE_K, mode=cfg.search_mode)
    items = [
        text_item(f"L{i}", h, float(h.scores.fused), i, ["literature"], "literature")
        for i, h in enumerate(hits, 1)
    ]
    for item in items:
        item["topic"] = topic
    return {"literature": items}
