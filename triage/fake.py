"""A deterministic analyser for tests and engine benchmarks (``--analyser fake[:options]``).

It reads every study through the real intake (so unreadable inputs fail like they would for the agent) and
derives every output from a hash of the item key and simple image statistics: the same item always gets the
same result, on any machine, in any process. Options, comma-separated ``key=value``:

- ``fail=TEXT``: raise :class:`triage.errors.AnalyserError` for items whose key or accession contains TEXT.
- ``delay=SECONDS``: sleep that long per item (to make a run slow enough to interrupt in tests).
- ``load=SECONDS``: sleep that long once, when created (simulates loading models).
- ``hold=TEXT,gate=PATH``: items whose key or accession contains TEXT wait until the file PATH exists (at most
  :data:`HOLD_MAX_S`), so a test knows which worker has which item in flight when it kills a process or node.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from triage import studies
from triage.errors import AnalyserError
from triage.types import Analysis, WorkItem

log = logging.getLogger(__name__)

#: Diagnoses the fake analyser chooses from.
FAKE_DIAGNOSES: tuple[str, ...] = (
    "Glioblastoma",
    "Meningioma",
    "Pituitary adenoma",
    "Cerebral abscess",
    "Tuberous sclerosis",
    "Hemangioblastoma",
    "Ependymoma",
    "Colloid cyst",
    "Neurocysticercosis",
)
_CHANGE = ("worsening", "stable", "improved")
#: Longest wait of a held item for its gate file (seconds); then it fails like an analyser error.
HOLD_MAX_S = 600.0
_OPTIONS = ("fail", "delay", "load", "hold", "gate")


def parse_options(arg: str) -> dict[str, str]:
    """``"fail=x,delay=0.1"`` -> ``{"fail": "x", "delay": "0.1"}``.

    Raises:
        AnalyserError: On an unknown option or a malformed one.
    """
    out: dict[str, str] = {}
    for part in (p.strip() for p in (arg or "").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _OPTIONS:
            raise AnalyserError(
                f"Bad fake analyser option {part!r}.",
                hint="Use fake:fail=TEXT,delay=SECONDS,load=SECONDS,hold=TEXT,gate=PATH.",
            )
        out[key] = value.strip()
    if bool(out.get("hold")) != bool(out.get("gate")):
        raise AnalyserError("fake:hold= and gate= go together.", hint="e.g. fake:hold=ACC0003,gate=/tmp/go")
    return out


def _wait_for(gate: Path) -> None:
    deadline = time.monotonic() + HOLD_MAX_S
    while not gate.exists():
        if time.monotonic() > deadline:
            raise AnalyserError("The fake analyser's gate file never appeared.", hint="Expected in tests.")
        time.sleep(0.05)


class FakeAnalyser:
    """See the module docstring.

    Args:
        arg: The options after ``fake:``.
    """

    def __init__(self, arg: str = "") -> None:
        opts = parse_options(arg)
        try:
            self.delay = float(opts.get("delay", 0) or 0)
            load = float(opts.get("load", 0) or 0)
        except ValueError as exc:
            raise AnalyserError("fake analyser delays must be numbers.", hint="e.g. fake:delay=0.05") from exc
        self.fail = opts.get("fail") or None
        self.hold = opts.get("hold") or None
        self.gate = Path(opts["gate"]) if opts.get("gate") else None
        self.name = f"fake:{arg}" if arg else "fake"
        if load > 0:
            time.sleep(load)

    def analyse(self, item: WorkItem) -> Analysis:
        """Deterministic analysis of ``item`` (see the module docstring).

        Raises:
            AnalyserError: For items selected by ``fail=``.
            IntakeError, NotFoundError: When the study cannot be read.
        """
        if self.fail and (self.fail in item.item_key or self.fail in (item.accession or "")):
            raise AnalyserError("Injected failure of the fake analyser.", hint="Expected in tests.")
        if self.hold and self.gate and (self.hold in item.item_key or self.hold in (item.accession or "")):
            _wait_for(self.gate)
        if self.delay > 0:
            time.sleep(self.delay)
        current = studies.pick_images(studies.load(item.study_path))
        if not current:
            raise AnalyserError("The study holds no image.", hint="Check the worklist entry.")
        image = studies.display_array(current[0])
        gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
        h = hashlib.sha256(item.item_key.encode("utf-8")).digest()
        anomaly = float(np.clip(0.6 * h[0] / 255 + 0.4 * float(gray.std()) / 128.0, 0.0, 1.0))
        picks = [FAKE_DIAGNOSES[(h[1] + 3 * i) % len(FAKE_DIAGNOSES)] for i in range(3)]
        raw = np.array([h[2] + 64, h[3] + 16, h[4] + 1], dtype=np.float64)
        probs = raw / raw.sum() * 0.9
        order = np.argsort(-probs, kind="stable")
        differential = [
            {"diagnosis": picks[i], "probability": round(float(probs[j]), 4), "citations": [f"E{i + 1}"]}
            for i, j in enumerate(order)
        ]
        abstained = differential[0]["probability"] < 0.36
        analysis = Analysis(
            differential=differential,
            abstained=abstained,
            abstain_reason="Top diagnosis below the confidence threshold." if abstained else None,
            anomaly_score=round(anomaly, 4),
            ood_score=round(h[5] / 255 * 0.3, 4),
            caption=f"Focal abnormality, anomaly score {anomaly:.2f}.",
            nearest_similarity=round(0.45 + 0.55 * h[6] / 255, 4),
            nearest_diagnosis=FAKE_DIAGNOSES[h[7] % len(FAKE_DIAGNOSES)],
            image=image,
            analyser=self.name,
        )
        rows, cols = gray.shape
        cy, cx = rows * (0.25 + 0.5 * h[8] / 255), cols * (0.25 + 0.5 * h[9] / 255)
        sigma = max(rows, cols) * 0.08
        yy, xx = np.mgrid[0:rows, 0:cols]
        analysis.heatmap = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
        analysis.boxes = [
            {
                "x1": round(cx - 2 * sigma, 1),
                "y1": round(cy - 2 * sigma, 1),
                "x2": round(cx + 2 * sigma, 1),
                "y2": round(cy + 2 * sigma, 1),
                "score": round(anomaly, 4),
                "label": "lesion",
            }
        ]
        if item.prior_path:
            prior = studies.pick_images(studies.load(item.prior_path))
            if prior:
                pimg = studies.display_array(prior[0])
                delta = float(gray.mean()) - float(
                    pimg.mean(axis=2).mean() if pimg.ndim == 3 else pimg.mean()
                )
                label = _CHANGE[(h[10] + (0 if delta > 0 else 1)) % 3]
                analysis.change_label = label
                analysis.change_confidence = round(0.5 + 0.5 * h[11] / 255, 4)
                analysis.change_statement = f"Finding {label} compared with the prior."
        return analysis
