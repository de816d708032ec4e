"""Words for synthetic cases: where a lesion is, its attributes, the caption and the (simulated) history.

Every caption and history says the case is synthetic; nothing here describes a real patient.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zebra_datasets.synth.lesions import LesionSpec
from zebra_datasets.synth.phantom import SEQUENCE_NAMES, Anatomy

_SYMPTOMS = (
    "new-onset headache",
    "a first focal seizure",
    "progressive weakness of one arm",
    "word-finding difficulty",
    "blurred vision",
    "dizziness and unsteady gait",
    "personality change noticed by family",
    "an incidental finding on screening",
)


def region_of(anatomy: Anatomy, point: tuple[float, float]) -> tuple[str, str]:
    """``(side, region)`` of a point of an axial slice, radiological convention (image left = patient right).

    Returns:
        Side ``"right"``, ``"left"`` or ``"midline"`` and a region such as ``"frontal lobe"`` or
        ``"periventricular white matter"``.
    """
    cos, sin = math.cos(anatomy.angle), math.sin(anatomy.angle)
    dy, dx = point[0] - anatomy.center[0], point[1] - anatomy.center[1]
    nu = (cos * dx + sin * dy) / anatomy.axes[1]
    nv = (-sin * dx + cos * dy) / anatomy.axes[0]
    side = "midline" if abs(nu) < 0.07 else ("right" if nu < 0 else "left")
    radial = math.hypot(nu, nv)
    if radial < 0.32:
        region = "periventricular white matter" if abs(nv) > 0.12 or abs(nu) > 0.15 else "deep grey nuclei"
    elif nv < -0.35:
        region = "frontal lobe"
    elif nv > 0.5:
        region = "occipital lobe"
    elif abs(nu) > 0.6:
        region = "temporal lobe"
    else:
        region = "parietal lobe"
    return side, region


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(ys.mean()), float(xs.mean())


def describe(
    spec: LesionSpec, anatomy: Anatomy, masks: list[np.ndarray], mm_per_px: float, mass_effect: str
) -> dict[str, Any]:
    """The attributes of a drawn lesion (what captions are made of), JSON-ready."""
    t = spec.type
    present = [m for m in masks if m.any()]
    union = np.logical_or.reduce(present) if present else np.zeros(anatomy.image.shape, bool)
    sizes = []
    for m in present:
        ys, xs = np.nonzero(m)
        sizes.append(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * mm_per_px)
    sides_regions = [region_of(anatomy, _centroid(m)) for m in present]
    if spec.kind == "multifocal_small":
        sides = {s for s, _ in sides_regions}
        site = (
            "scattered in both cerebral hemispheres"
            if {"left", "right"} <= sides
            else (f"scattered in the {next(iter(sides - {'midline'}), 'midline')} cerebral hemisphere")
        )
        side, region = sides_regions[0] if sides_regions else ("midline", "brain")
    else:
        side, region = sides_regions[0] if sides_regions else region_of(anatomy, spec.foci[0].center)
        if spec.kind == "extra_axial_dural":
            lobe = region.replace(" lobe", "") if region.endswith("lobe") else "parietal"
            site = f"along the {side} {lobe} convexity" if side != "midline" else f"along the falx ({lobe})"
        else:
            site = f"in the {side} {region}" if side != "midline" else f"in the midline {region}"
    return {
        "type": spec.kind,
        "diagnosis": t.diagnosis,
        "sequence": anatomy.sequence,
        "side": side,
        "region": region,
        "site": site,
        "size_mm": round(max(sizes), 1) if sizes else 0.0,
        "shape": spec.shape,
        "margin": t.margin,
        "signal": t.signal.get(anatomy.sequence, t.signal.get("background", "")),
        "multiplicity": "multiple" if len(present) > 1 else "solitary",
        "n_foci": len(present),
        "edema": bool(spec.edema),
        "mass_effect": mass_effect,
        "area_px": int(union.sum()),
    }


def caption(attrs: dict[str, Any], *, change: dict[str, Any] | None = None) -> str:
    """A radiology-style caption built only from ``attrs``; it always says the image is synthetic."""
    seq = SEQUENCE_NAMES.get(attrs["sequence"], attrs["sequence"])
    if attrs["n_foci"] == 0:
        body = "No residual lesion is visible."
    elif attrs["multiplicity"] == "multiple":
        body = (
            f"{attrs['n_foci']} {attrs['margin']} {attrs['shape']} lesions {attrs['site']}, the largest about "
            f"{attrs['size_mm']:.0f} mm, showing {attrs['signal']}."
        )
    else:
        body = (
            f"A solitary {attrs['margin']} {attrs['shape']} lesion {attrs['site']}, about {attrs['size_mm']:.0f} mm, "
            f"showing {attrs['signal']}."
        )
    parts = [f"Synthetic axial {seq} slice (generated; not a real patient).", body]
    if attrs.get("edema"):
        parts.append("Surrounding edema-like signal.")
    parts.append(
        {
            "none": "No mass effect.",
            "mild": "Mild mass effect on adjacent structures.",
            "moderate": "Moderate mass effect with effacement of adjacent sulci and ventricle.",
        }[attrs["mass_effect"]]
    )
    if change:
        verb = {
            "worsening": "has grown",
            "stable": "is unchanged in size",
            "improved": "has decreased in size",
        }[change["label"]]
        parts.append(
            f"Compared with the prior synthetic scan, the lesion {verb} (about {change['prior_size_mm']:.0f} mm before, "
            f"{attrs['size_mm']:.0f} mm now)."
        )
    return " ".join(parts)


def history(rng: np.random.Generator) -> str:
    """A simulated, clearly synthetic clinical history."""
    age = int(rng.integers(18, 80))
    sex = str(rng.choice(["woman", "man"]))
    symptom = str(rng.choice(_SYMPTOMS))
    return f"Synthetic case (generated for testing; no real patient). Simulated history: {age}-year-old {sex} with {symptom}."
