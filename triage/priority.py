"""The triage priority: a documented score in [0, 100] and the components that drove it.

Five components, each in [0, 1] (``None`` when the analyser could not measure it; it then contributes 0):

- ``anomaly``: the highest VLM anomaly score of the analysed images.
- ``rarity``: how far the study lies from every known case. From the image index: the cosine similarity
  ``s`` of the nearest indexed image maps linearly to ``(RARITY_SIM_HIGH - s) / (RARITY_SIM_HIGH -
  RARITY_SIM_LOW)`` clipped to [0, 1] (a near-duplicate of a known case is 0, anything at or below
  ``RARITY_SIM_LOW`` is 1). From the text evidence: ``1 - support`` of the top diagnosis. The larger of the
  two available values is used.
- ``change``: against the prior. ``worsening`` gives its confidence; ``stable`` and ``improved`` give 0.
- ``uncertainty``: ``1 - p`` of the top diagnosis; 1 when the analyser abstained or proposed nothing
  (a human should read it).
- ``ood``: out-of-distribution signal of the VLM input gate: 1 when the gate rejected the image, else the
  gate's OOD score.

``score = 100 * sum_c(w_c * x_c) / sum_c(w_c)`` with the :class:`PriorityWeights` (defaults: anomaly 0.30,
change 0.25, rarity 0.20, uncertainty 0.15, ood 0.10). The denominator is the sum of all weights, so scores
of one run stay comparable whatever was measured. ``drivers`` lists each measured component's contribution in
points, largest first. Exports sort by score, then worsening before other changes, then the item key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from triage.types import Analysis

#: Nearest-neighbour cosine similarity at or above which a study counts as a known, common picture.
RARITY_SIM_HIGH = 0.95
#: Similarity at or below which a study counts as maximally unlike every known case.
RARITY_SIM_LOW = 0.50
#: Component names, in display order.
COMPONENTS: tuple[str, ...] = ("anomaly", "change", "rarity", "uncertainty", "ood")


@dataclass(frozen=True)
class PriorityWeights:
    """Weights of the priority components (any non-negative values; they are normalised by their sum)."""

    anomaly: float = 0.30
    change: float = 0.25
    rarity: float = 0.20
    uncertainty: float = 0.15
    ood: float = 0.10

    def __post_init__(self) -> None:
        values = [getattr(self, c) for c in COMPONENTS]
        if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
            raise ValueError("priority weights must be finite, non-negative and not all zero")

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dictionary."""
        return asdict(self)


def _unit(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return min(1.0, max(0.0, value))


def rarity_from_similarity(similarity: float | None) -> float | None:
    """Maps the nearest known case's cosine similarity to a rarity in [0, 1] (see the module docstring)."""
    if similarity is None or not math.isfinite(float(similarity)):
        return None
    return _unit((RARITY_SIM_HIGH - float(similarity)) / (RARITY_SIM_HIGH - RARITY_SIM_LOW))


def components(analysis: Analysis) -> dict[str, float | None]:
    """The five components of ``analysis`` (``None`` = not measured)."""
    rarities = [
        r
        for r in (
            rarity_from_similarity(analysis.nearest_similarity),
            None if analysis.text_support is None else _unit(1.0 - float(analysis.text_support)),
        )
        if r is not None
    ]
    if not analysis.gate_accepted:
        ood: float | None = 1.0
    else:
        ood = _unit(analysis.ood_score)
    if analysis.change_label is None:
        change: float | None = None
    elif analysis.change_label == "worsening":
        change = _unit(analysis.change_confidence if analysis.change_confidence is not None else 1.0)
    else:
        change = 0.0
    top = analysis.top_probability
    uncertainty = 1.0 if analysis.abstained or top is None else _unit(1.0 - top)
    return {
        "anomaly": _unit(analysis.anomaly_score),
        "change": change,
        "rarity": max(rarities) if rarities else None,
        "uncertainty": uncertainty,
        "ood": ood,
    }


def score(analysis: Analysis, weights: PriorityWeights | None = None) -> dict[str, Any]:
    """The priority of ``analysis``.

    Returns:
        ``{"score": float in [0, 100] rounded to 3 decimals, "components": {name: value or None},
        "drivers": [{"name", "value", "weight", "points"}] sorted by points (largest first, ties by name),
        "weights": {...}}``.
    """
    weights = weights or PriorityWeights()
    comps = components(analysis)
    total_w = sum(getattr(weights, c) for c in COMPONENTS)
    drivers = []
    for name in COMPONENTS:
        value = comps[name]
        if value is None:
            continue
        w = getattr(weights, name)
        drivers.append(
            {
                "name": name,
                "value": round(value, 4),
                "weight": w,
                "points": round(100.0 * w * value / total_w, 3),
            }
        )
    drivers.sort(key=lambda d: (-d["points"], d["name"]))
    total = round(sum(d["points"] for d in drivers), 3)
    return {
        "score": min(100.0, max(0.0, total)),
        "components": {k: (None if v is None else round(v, 4)) for k, v in comps.items()},
        "drivers": drivers,
        "weights": weights.to_dict(),
    }


def drivers_text(priority: dict[str, Any], *, top: int = 3) -> str:
    """``"anomaly 27.0; change 20.0"``: the largest non-zero contributions, for tables."""
    parts = [
        f"{d['name']} {d['points']:.1f}" for d in priority.get("drivers") or [] if d.get("points", 0) > 0
    ]
    return "; ".join(parts[:top])


def sort_key(priority: float | None, change_label: str | None, item_key: str) -> tuple[Any, ...]:
    """Export order: highest score first, then worsening before other changes, then the key (stable)."""
    return (-(priority if priority is not None else -1.0), 0 if change_label == "worsening" else 1, item_key)
