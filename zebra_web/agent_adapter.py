"""The one place that knows the diagnostic agent's API (``agent.api.Agent``).

The web app calls :class:`AgentAdapter`; it builds the agent lazily through a factory (tests inject a fake),
passes the images the radiologist is looking at, turns the agent's :class:`agent.answer.Answer` into plain
JSON and emits the answer text in sentence-sized chunks as it becomes available. If the agent's API changes,
this module is what changes.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zebra.errors import ZebraError
from zebra_web.errors import AgentUnavailableError
from zebra_web.inflight import AsyncSlots
from zebra_web.redact import mask_secrets

log = logging.getLogger(__name__)

#: ``on_event(kind, data)``: kind is ``"status"`` or ``"delta"``.
EventSink = Callable[[str, dict[str, Any]], None]
AgentFactory = Callable[[], Any]

_SENTENCE_END = re.compile(r"[.!?;:]\s+")


@dataclass
class AgentImage:
    """An image handed to the agent.

    Attributes:
        study_id: The study it belongs to.
        n: Its index in the study (what the image URLs use).
        pixels: The display image (uint8, what the viewer shows at the default window).
        name: A neutral name (``"study-3-image-12"``), never a file name from the upload.
        study_uid: The study's UID (unique per uploader): what its overlays are stored under.
    """

    study_id: int
    n: int
    pixels: np.ndarray
    name: str
    study_uid: str = ""


@dataclass
class AgentRequest:
    """One question to the agent.

    Attributes:
        question: The radiologist's question.
        images: Current study images (the one on screen first).
        priors: Prior study images, same order.
        history: Clinical history, free text, or ``None``.
        thread_id: Conversation id (the chat session id), so follow-up questions see earlier turns.
    """

    question: str
    images: list[AgentImage] = field(default_factory=list)
    priors: list[AgentImage] = field(default_factory=list)
    history: str | None = None
    thread_id: str | None = None


def default_agent_factory(settings: Any) -> AgentFactory:
    """A factory that builds ``agent.api.Agent`` from Zebra's settings, saving heatmaps for the viewer."""

    def build() -> Any:
        try:
            from agent.api import Agent
            from agent.configuration import Configuration
        except ImportError as exc:
            raise AgentUnavailableError(
                "The diagnostic agent is not installed in this build.",
                hint="Install the complete Zebra package (agent/), then restart zebra serve.",
            ) from exc
        config = Configuration.from_settings(
            save_heatmaps=True, heatmap_dir=str(settings.data_dir / "web" / "agent-heatmaps")
        )
        return Agent(config)

    return build


def chunk_text(text: str, max_chars: int = 120) -> list[str]:
    """Splits an answer into sentence-sized pieces (long sentences at spaces); the pieces join back to it."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    out: list[str] = []
    for piece in pieces:
        while len(piece) > max_chars:
            cut = piece.rfind(" ", 0, max_chars)
            cut = cut + 1 if cut > 0 else max_chars
            out.append(piece[:cut])
            piece = piece[cut:]
        if piece:
            out.append(piece)
    return out


def _as_dict(answer: Any) -> dict[str, Any]:
    if isinstance(answer, dict):
        return dict(answer)
    to_dict = getattr(answer, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise AgentUnavailableError(
        "The agent returned something that is not an answer.", hint="Report this; see the server log."
    )


def _is_answer(item: Any) -> bool:
    return (isinstance(item, dict) and "differential" in item) or hasattr(item, "differential")


class AgentAdapter:
    """Builds the agent on first use and asks it questions (thread-safe, bounded concurrency).

    Args:
        factory: Returns an object with ``ask(question, *, images, priors, history, thread_id)``; optionally
            ``stream(...)`` with the same arguments, yielding text pieces and finally the answer.
        concurrency: Questions answered at once (the agent's models are shared; more may not be faster).
    """

    def __init__(self, factory: AgentFactory, *, concurrency: int = 1) -> None:
        self._factory = factory
        self._agent: Any = None
        self._build_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        #: Callers on the event loop wait here before taking a thread for :meth:`ask` (issue 15.5).
        self.slots = AsyncSlots(max(1, concurrency))

    def agent(self) -> Any:
        """The agent, built on first call.

        Raises:
            AgentUnavailableError: When it cannot be built (the next call tries again).
        """
        with self._build_lock:
            if self._agent is None:
                try:
                    self._agent = self._factory()
                except ZebraError as exc:
                    if isinstance(exc, AgentUnavailableError):
                        raise
                    # The reason may name the reasoner's URL or credentials: the log gets it, users do not.
                    log.error("the diagnostic agent could not start: %s", mask_secrets(exc.message))
                    raise AgentUnavailableError(
                        "The diagnostic agent could not start.",
                        hint="Tell the administrator (the reason is in the server log).",
                    ) from exc
            return self._agent

    def ask(self, request: AgentRequest, on_event: EventSink) -> dict[str, Any]:
        """Answers one question (blocking). Emits ``delta`` events with the text as it forms.

        Returns:
            The answer as a JSON-ready dict (``Answer.to_dict()`` form), with ``findings[i]["image_ref"]``
            set to the ``(study_id, n)`` of the image it describes, ``findings[i]["image_key"]`` to its
            study's UID and the raw heatmap (array or file path)
            under ``findings[i]["heatmap_source"]``.

        Raises:
            AgentUnavailableError: The agent cannot be built or failed.
            ZebraError: A typed error of the agent (bad input ...).
        """
        agent = self.agent()
        # (name, array) pairs: the agent reports each finding under that name (and its index).
        images = [(img.name, img.pixels) for img in request.images]
        priors = [(img.name, img.pixels) for img in request.priors]
        kwargs: dict[str, Any] = {
            "images": images,
            "priors": priors,
            "history": request.history,
            "thread_id": request.thread_id,
        }
        with self._slots:
            on_event("status", {"stage": "analysing"})
            stream = getattr(agent, "stream", None)
            if callable(stream):
                raw = self._consume_stream(stream(request.question, **kwargs), on_event)
            else:
                raw = _as_dict(agent.ask(request.question, **kwargs))
                for piece in chunk_text(str(raw.get("text") or "")):
                    on_event("delta", {"text": piece})
        by_name = {img.name: i for i, img in enumerate(request.images)}
        findings = []
        for i, finding in enumerate(raw.get("findings") or []):
            finding = dict(finding) if isinstance(finding, dict) else {}
            index = by_name.get(
                str(finding.get("image")), finding.get("image_index", finding.get("index", i))
            )
            index = index if isinstance(index, int) and 0 <= index < len(request.images) else None
            if index is not None:
                shown = request.images[index]
                finding["image_ref"] = (shown.study_id, shown.n)
                finding["image_key"] = shown.study_uid or None
            finding["heatmap_source"] = next(
                (
                    finding.get(k)
                    for k in ("heatmap_array", "heatmap_path", "heatmap")
                    if finding.get(k) is not None
                ),
                None,
            )
            findings.append(finding)
        raw["findings"] = findings
        return raw

    @staticmethod
    def _consume_stream(events: Iterable[Any], on_event: EventSink) -> dict[str, Any]:
        final: Any = None
        for item in events:
            if isinstance(item, str):
                on_event("delta", {"text": item})
            elif _is_answer(item):
                final = item
            elif isinstance(item, dict) and item.get("type") in ("token", "delta", "text"):
                on_event("delta", {"text": str(item.get("text", ""))})
            elif isinstance(item, dict) and item.get("type") == "status":
                on_event("status", {k: v for k, v in item.items() if k != "type"})
        if final is None:
            raise AgentUnavailableError("The agent ended without an answer.", hint="Ask again.")
        return _as_dict(final)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items() if not isinstance(v, np.ndarray)}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def present_answer(raw: dict[str, Any], *, overlays: Any, url_prefix: str = "/api") -> dict[str, Any]:
    """Turns an agent answer into what the page shows: differential, evidence with URLs, findings with overlays.

    Caches each finding's heatmap and boxes in ``overlays`` (an :class:`zebra_web.overlays.OverlayStore`).

    Returns:
        ``{text, intent, abstained, abstain_reason, backoff, change, notes, differential, citations, evidence:
        {documents, images, model}, findings, timings, reasoner}``; JSON-safe.
    """
    citations: list[dict[str, Any]] = []
    evidence: dict[str, list[dict[str, Any]]] = {"documents": [], "images": [], "model": []}
    for i, c in enumerate(raw.get("citations") or []):
        if not isinstance(c, dict):
            continue
        cid = str(c.get("id") or c.get("ref") or c.get("key") or f"E{i + 1}")
        item = {
            "id": cid,
            "kind": c.get("kind"),
            "source": c.get("source"),
            "title": c.get("title") or c.get("diagnosis") or c.get("what") or c.get("doc_id") or cid,
            "quote": c.get("quote") or c.get("caption") or "",
            "url": c.get("url") if str(c.get("url") or "").startswith(("http://", "https://")) else None,
            "doc_id": c.get("doc_id") or c.get("image_id"),
            "diagnosis": c.get("diagnosis"),
            "score": c.get("score") if isinstance(c.get("score"), int | float) else None,
        }
        if cid.startswith("I") or c.get("kind") == "image":
            thumb = c.get("thumbnail")
            name = None
            if isinstance(thumb, np.ndarray):
                name = overlays.save_thumbnail_array(thumb)
            else:
                name = overlays.thumbnail(c.get("path") or c.get("image_path") or thumb)
            item["thumbnail_url"] = f"{url_prefix}/thumbnails/{name}.png" if name else None
            evidence["images"].append(item)
        elif cid.startswith("M") or c.get("kind") in ("model", "vlm", "model_output"):
            evidence["model"].append(item)
        else:
            evidence["documents"].append(item)
        citations.append(item)

    findings = []
    for finding in raw.get("findings") or []:
        ref = finding.get("image_ref")
        shown = {
            "anomaly_score": finding.get("anomaly_score"),
            "caption": finding.get("caption"),
            "boxes": [b for b in finding.get("boxes") or [] if isinstance(b, dict)],
            "gate": finding.get("gate"),
            "attributes": finding.get("attributes"),
        }
        shown = _json_safe(shown)
        analysed = (
            shown["anomaly_score"] is not None or shown["boxes"] or finding.get("heatmap_source") is not None
        )
        key = finding.get("image_key")
        if ref is not None and key and analysed:
            study_id, n = ref
            stored = overlays.save(key, n, shown, finding.get("heatmap_source"))
            base = f"{url_prefix}/studies/{study_id}/images/{n}"
            shown.update(
                study_id=study_id,
                image_index=n,
                heatmap_url=f"{base}/heatmap.png" if stored.get("heatmap_kind") else None,
                heatmap_kind=stored.get("heatmap_kind"),
                overlays_url=f"{base}/overlays",
            )
        findings.append(shown)

    change = raw.get("change")
    if isinstance(change, dict):
        change = change.get("statement") or None
    differential = [
        {
            "diagnosis": str(d.get("diagnosis", "")),
            "probability": float(d.get("probability") or 0.0),
            "citations": [str(c) for c in d.get("citations") or []],
            "rationale": str(d.get("rationale") or ""),
            "icd10": d.get("icd10"),
        }
        for d in raw.get("differential") or []
        if isinstance(d, dict)
    ]
    return _json_safe(
        {
            "text": str(raw.get("text") or ""),
            "intent": raw.get("intent"),
            "abstained": bool(raw.get("abstained")),
            "abstain_reason": raw.get("abstain_reason"),
            "backoff": raw.get("backoff"),
            "change": change,
            "notes": [str(n) for n in raw.get("notes") or []],
            "differential": differential,
            "citations": citations,
            "evidence": evidence,
            "findings": findings,
            "timings": raw.get("timings") or {},
            "reasoner": raw.get("reasoner"),
        }
    )


def pick_indices(count: int, focus: int | None, limit: int) -> list[int]:
    """Indices of the images to send: the one on screen first, then evenly spaced others, ``limit`` at most."""
    if count <= 0:
        return []
    chosen: list[int] = []
    if focus is not None and 0 <= focus < count:
        chosen.append(focus)
    if limit > len(chosen):
        spaced = np.linspace(0, count - 1, num=min(count, limit)).round().astype(int).tolist()
        for idx in spaced:
            if idx not in chosen and len(chosen) < limit:
                chosen.append(idx)
    return chosen


def images_of(sequence: Sequence[AgentImage]) -> list[int]:
    """The ``n`` of each image (for logs and audit: no pixels, no names)."""
    return [img.n for img in sequence]
