"""``perceive``: the VLM's analysis of each accepted image (anomaly score, boxes, heatmap, attributes,
caption) and the change against the prior study."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from agent.configuration import Configuration
from agent.nodes.common import note, traced
from agent.resources import AgentContext
from agent.state import AgentState
from zebra.errors import ZebraError

log = logging.getLogger(__name__)

#: Boxes kept per image.
MAX_BOXES = 5


def heatmap_dir(cfg: Configuration) -> Path:
    """Where heatmap PNGs go."""
    if cfg.heatmap_dir:
        return Path(cfg.heatmap_dir).expanduser()
    from zebra.config import get_settings

    return get_settings().data_dir / "agent" / "heatmaps"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "image"


def _rejected(state: AgentState) -> set[int]:
    verdicts = (state.get("gate") or {}).get("images") or []
    return {v["index"] for v in verdicts if v.get("role") == "image" and not v.get("accepted")}


@traced("perceive", reads=("image_names", "prior_names", "gate"))
def perceive(state: AgentState, ctx: AgentContext, cfg: Configuration) -> dict[str, Any]:
    """Analyses the accepted current images (the first one against the first prior, when given)."""
    notes: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    change: dict[str, Any] | None = None
    if not ctx.images:
        if ctx.priors:
            notes.append(
                note(state, "perceive", "A prior was given without a current image; it was ignored.")
            )
        return {"findings": [], "change": None, "notes": notes}
    vlm = ctx.resources.get_vlm()
    rejected = _rejected(state)
    first_analysis: Any = None
    turn = int(state.get("turn", 0))
    for i, (name, image) in enumerate(ctx.images):
        if i in rejected:
            continue
        entry: dict[str, Any] = {"index": i, "image": name, "accepted": True}
        if vlm is None:
            entry["analysis"] = "unavailable"
            findings.append(entry)
            continue
        prior = ctx.priors[0][1] if i == 0 and ctx.priors else None
        analysis = ctx.analyses.get(i)
        try:
            if analysis is None:
                analysis = vlm.analyze(image, prior=prior)
        except ZebraError as exc:
            notes.append(note(state, "perceive", f"Image model failed on {name}: {exc.message}"))
            entry["analysis"] = "failed"
            findings.append(entry)
            continue
        current = analysis.current
        data = current.to_dict()
        entry.update(
            id=f"M{len(findings) + 1}",
            accepted=bool(current.gate.accepted),
            gate=data["gate"],
            anomaly_score=data["anomaly_score"],
            boxes=data["boxes"][:MAX_BOXES],
            caption=data["caption"],
            attributes=data["attributes"],
            findings=data.get("findings"),
            model=data["model"],
            size=[int(s) for s in getattr(image, "shape", ())[:2]],
            heatmap=None,
        )
        if cfg.save_heatmaps and current.heatmap is not None:
            from agent.heatmaps import save_overlay

            path = heatmap_dir(cfg) / _safe(ctx.thread_id) / f"turn{turn}_{i}_{_safe(Path(name).stem)}.png"
            try:
                entry["heatmap"] = str(save_overlay(image, current.heatmap, path))
            except OSError as exc:
                notes.append(note(state, "perceive", f"Could not write the heatmap of {name}: {exc}"))
        findings.append(entry)
        if i == 0:
            first_analysis = analysis
        if i == 0 and analysis.change is not None:
            change = {**analysis.change.to_dict(), "model": data["model"], "prior": ctx.priors[0][0]}
            if analysis.prior is not None and not analysis.prior.gate.accepted:
                notes.append(
                    note(state, "perceive", "The prior was rejected by the input gate; no change reported.")
                )
                change = None
    if change is not None:
        change["id"] = f"M{len(findings) + 1}"
        if cfg.save_heatmaps:
            diff_map = getattr(getattr(first_analysis, "change", None), "diff_heatmap", None)
            if diff_map is not None:
                from agent.heatmaps import save_overlay

                path = heatmap_dir(cfg) / _safe(ctx.thread_id) / f"turn{turn}_change.png"
                change["heatmap"] = str(save_overlay(ctx.images[0][1], diff_map, path))
    elif ctx.priors and vlm is None:
        notes.append(
            note(state, "perceive", "A prior was given but no image model is available to compare it.")
        )
    if vlm is None:
        notes.append(
            note(
                state,
                "perceive",
                f"Image analysis unavailable ({ctx.resources.vlm_error or 'VLM switched off'}).",
            )
        )
    update: dict[str, Any] = {"findings": findings, "change": change}
    if notes:
        update["notes"] = notes
    return update
