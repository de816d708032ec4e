"""A scripted stand-in for the diagnostic agent, for tests, the browser test and ``bench chat --test-agent``.

Its answers are canned and say so ("[test agent]"): they exercise every part of the page (differential,
citations, similar-image thumbnails, heatmap and boxes, change statement, abstention) without models.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _blob(shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, float]]:
    """A Gaussian heatmap around the brightest smoothed region, and its box."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * 0.45, w * 0.55
    sigma = max(4.0, min(h, w) / 10)
    heat = np.exp(-(((yy - cy) ** 2) + ((xx - cx) ** 2)) / (2 * sigma**2)).astype(np.float32)
    box = {
        "x1": float(cx - 2 * sigma),
        "y1": float(cy - 2 * sigma),
        "x2": float(cx + 2 * sigma),
        "y2": float(cy + 2 * sigma),
        "score": 0.81,
        "label": "finding",
    }
    return heat, box


class ScriptedAgent:
    """Answers every question with the same structured answer, built around the images it is given.

    Args:
        delay_s: Seconds to wait before answering (simulates model time).
        thumb_dir: Where its similar-image evidence file is written; a temporary folder when ``None``.
    """

    def __init__(self, delay_s: float = 0.0, thumb_dir: Path | None = None) -> None:
        self.delay_s = delay_s
        folder = Path(thumb_dir or tempfile.mkdtemp(prefix="zebra-test-agent-"))
        folder.mkdir(parents=True, exist_ok=True)
        self.similar_image = folder / "similar.png"
        if not self.similar_image.is_file():
            ramp = np.tile(np.linspace(0, 255, 96, dtype=np.float32), (96, 1))
            Image.fromarray(ramp.astype(np.uint8)).save(self.similar_image)
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def ask(
        self,
        question: str,
        *,
        images: Sequence[Any] = (),
        priors: Sequence[Any] = (),
        history: str | None = None,
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        """Returns the canned answer (``agent.answer.Answer.to_dict()`` form)."""
        with self._lock:
            self.calls.append(
                {
                    "question": question,
                    "n_images": len(images),
                    "n_priors": len(priors),
                    "thread_id": thread_id,
                }
            )
        if self.delay_s:
            time.sleep(self.delay_s)
        if not images:
            return {
                "text": "[test agent] I cannot assess this without an image. Upload a study first.",
                "question": question,
                "intent": "diagnosis",
                "differential": [],
                "abstained": True,
                "abstain_reason": "No image was provided.",
                "findings": [],
                "citations": [],
                "timings": {"total": self.delay_s},
                "thread_id": thread_id,
                "reasoner": "test",
            }
        findings = []
        for i, item in enumerate(images):
            # Like agent.api.Agent: arrays or (name, array) pairs; findings name their image.
            name, img = item if isinstance(item, tuple) else (f"image{i + 1}", item)
            heat, box = _blob(np.asarray(img).shape[:2])
            findings.append(
                {
                    "index": i,
                    "image": name,
                    "gate": {"accepted": True, "reason": None, "kind": "medical", "scores": {}},
                    "anomaly_score": 0.73,
                    "boxes": [box],
                    "caption": "Well-circumscribed hyperintense lesion in the right hemisphere.",
                    "attributes": {"site": "right hemisphere", "margin": "well-circumscribed"},
                    "heatmap_array": heat,
                }
            )
        text = (
            "[test agent] The findings are most consistent with a pilocytic astrocytoma [E1]. "
            "A haemangioblastoma is the main alternative [E2]; a similar case shows the same pattern [I1]. "
            "The model marks one focal abnormality [M1]."
        )
        return {
            "text": text,
            "question": question,
            "intent": "diagnosis",
            "differential": [
                {
                    "diagnosis": "Pilocytic astrocytoma",
                    "probability": 0.62,
                    "citations": ["E1", "I1"],
                    "rationale": "Cystic lesion with a mural nodule [E1].",
                    "icd10": "D43.1",
                },
                {
                    "diagnosis": "Haemangioblastoma",
                    "probability": 0.23,
                    "citations": ["E2"],
                    "rationale": "Same pattern in adults [E2].",
                    "icd10": None,
                },
                {
                    "diagnosis": "Metastasis",
                    "probability": 0.08,
                    "citations": [],
                    "rationale": "",
                    "icd10": None,
                },
            ],
            "abstained": False,
            "abstain_reason": None,
            "backoff": None,
            "findings": findings,
            "change": "Lesion larger than on the prior (area +35%)." if priors else None,
            "citations": [
                {
                    "id": "E1",
                    "kind": "case_report",
                    "source": "medpix",
                    "doc_id": "medpix:1",
                    "title": "Pilocytic astrocytoma of the cerebellum",
                    "quote": "cystic mass with an enhancing mural nodule",
                    "url": "https://medpix.nlm.nih.gov/case?id=1",
                },
                {
                    "id": "E2",
                    "kind": "disease_discussion",
                    "source": "hpo",
                    "doc_id": "hpo:2",
                    "title": "Haemangioblastoma",
                    "quote": "cerebellar cyst with a nodule in adults",
                },
                {
                    "id": "I1",
                    "kind": "image",
                    "source": "medpix",
                    "doc_id": "medpix:img1",
                    "title": "Similar case",
                    "quote": "axial T1 post contrast",
                    "path": str(self.similar_image),
                },
                {
                    "id": "M1",
                    "kind": "model",
                    "source": "vlm",
                    "title": "VLM finding",
                    "quote": "anomaly score 0.73",
                },
            ],
            "timings": {"total": self.delay_s},
            "thread_id": thread_id,
            "reasoner": "test",
            "notes": [],
        }


class StreamingScriptedAgent(ScriptedAgent):
    """The scripted agent with a ``stream`` method: text pieces first, then the answer.

    Args:
        piece_delay_s: Pause between text pieces (lets a browser test see the answer grow).
        **kwargs: See :class:`ScriptedAgent`.
    """

    def __init__(self, piece_delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.piece_delay_s = piece_delay_s

    def stream(self, question: str, **kwargs: Any) -> Iterator[Any]:
        """Yields the answer text word by word, then the answer dict."""
        answer = self.ask(question, **kwargs)
        for word in answer["text"].split(" "):
            if self.piece_delay_s:
                time.sleep(self.piece_delay_s)
            yield word + " "
        yield answer
