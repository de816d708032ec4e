"""Synthetic lesions of named appearance types: sampling their geometry and drawing them.

A :class:`LesionSpec` is sampled once per case; :func:`render_lesion` draws it at any ``scale`` so that a
follow-up scan can show the same lesion grown or shrunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zebra_datasets.synth.image_ops import ellipse_radius, gaussian_blur, grid, smooth_noise, smoothstep
from zebra_datasets.synth.phantom import Anatomy


@dataclass(frozen=True)
class LesionType:
    """A named appearance.

    Attributes:
        key: Identifier (``"ring_enhancing"``).
        diagnosis: The synthetic diagnosis label, always prefixed ``"synthetic"``.
        sequences: Synthetic sequences it is shown on.
        shapes: Shape words it may get.
        margin: Margin word.
        diameter_mm: Range of the largest diameter (per focus for multifocal lesions).
        edema: Whether perilesional edema is drawn (choices).
        signal: Caption phrase per sequence.
    """

    key: str
    diagnosis: str
    sequences: tuple[str, ...]
    shapes: tuple[str, ...]
    margin: str
    diameter_mm: tuple[float, float]
    edema: tuple[bool, ...]
    signal: dict[str, str]


LESION_TYPES: dict[str, LesionType] = {
    t.key: t
    for t in (
        LesionType(
            "ring_enhancing",
            "synthetic ring-enhancing lesion",
            ("T1c",),
            ("round", "irregular"),
            "well-defined",
            (14.0, 40.0),
            (True,),
            {
                "T1c": "a thick enhancing rim around a non-enhancing, necrotic-appearing core",
                "background": "a bright rim around a dark necrotic-appearing core",
            },
        ),
        LesionType(
            "solid_homogeneous",
            "synthetic solid homogeneous mass",
            ("T1c", "T2"),
            ("round", "oval", "lobulated"),
            "well-defined",
            (10.0, 35.0),
            (False, True),
            {
                "T1c": "homogeneous enhancement",
                "T2": "homogeneous intermediate-to-high signal",
                "background": "homogeneous bright signal",
            },
        ),
        LesionType(
            "cystic_mural_nodule",
            "synthetic cystic lesion with mural nodule",
            ("T1c",),
            ("round", "oval"),
            "well-defined",
            (16.0, 40.0),
            (False,),
            {
                "T1c": "a fluid-signal cyst with a thin wall and an enhancing mural nodule",
                "background": "a fluid-like cyst with a bright mural nodule",
            },
        ),
        LesionType(
            "calcified",
            "synthetic calcified lesion",
            ("T2",),
            ("round", "oval"),
            "well-defined",
            (6.0, 16.0),
            (False,),
            {
                "T2": "markedly low signal with punctate dark (calcification-like) foci and blooming",
                "background": "markedly dark, calcification-like signal",
            },
        ),
        LesionType(
            "diffuse_infiltrative",
            "synthetic diffuse infiltrative T2-hyperintense lesion",
            ("FLAIR", "T2"),
            ("irregular",),
            "ill-defined",
            (30.0, 60.0),
            (False,),
            {
                "FLAIR": "ill-defined FLAIR hyperintensity infiltrating the white matter without a discrete mass",
                "T2": "ill-defined T2 hyperintensity infiltrating the white matter without a discrete mass",
                "background": "ill-defined hyperintensity infiltrating the surrounding tissue",
            },
        ),
        LesionType(
            "extra_axial_dural",
            "synthetic extra-axial dural-based mass",
            ("T1c",),
            ("lentiform",),
            "well-defined",
            (15.0, 40.0),
            (False, True),
            {
                "T1c": "homogeneous enhancement with a broad dural base and a dural tail",
                "background": "homogeneous bright signal with a broad base along the inner table",
            },
        ),
        LesionType(
            "multifocal_small",
            "synthetic multifocal small lesions",
            ("FLAIR", "T1c"),
            ("round",),
            "well-defined",
            (3.0, 8.0),
            (False,),
            {
                "FLAIR": "FLAIR hyperintensity",
                "T1c": "nodular enhancement",
                "background": "bright signal",
            },
        ),
    )
}


@dataclass
class Focus:
    """One blob: centre ``(row, col)``, semi-axes ``(rows, cols)`` in pixels, rotation and boundary bumps."""

    center: tuple[float, float]
    radii: tuple[float, float]
    angle: float = 0.0
    harmonics: tuple[tuple[int, float, float], ...] = ()


@dataclass
class LesionSpec:
    """The geometry of a case's lesion, independent of the scan it is drawn on."""

    kind: str
    shape: str
    edema: bool
    foci: list[Focus]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> LesionType:
        """The appearance type."""
        return LESION_TYPES[self.kind]

    def max_diameter_px(self, scale: float = 1.0) -> float:
        """Largest focus diameter in pixels at ``scale``."""
        return 2.0 * max(max(f.radii) for f in self.foci) * scale


def _harmonics(rng: np.random.Generator, shape: str) -> tuple[tuple[int, float, float], ...]:
    if shape == "lobulated":
        ks = rng.choice([3, 4, 5], size=2, replace=False)
        return tuple((int(k), float(rng.uniform(0.07, 0.13)), float(rng.uniform(0, 2 * math.pi))) for k in ks)
    if shape == "irregular":
        ks = rng.choice([2, 3, 5, 6, 7], size=4, replace=False)
        return tuple((int(k), float(rng.uniform(0.04, 0.09)), float(rng.uniform(0, 2 * math.pi))) for k in ks)
    return ((3, float(rng.uniform(0.0, 0.02)), float(rng.uniform(0, 2 * math.pi))),)


def _place(
    rng: np.random.Generator, allowed: np.ndarray, radius: float, taken: list[Focus] | None = None
) -> tuple[float, float] | None:
    """A centre whose disk of ``radius`` lies (90%) in ``allowed`` and clear of ``taken`` foci."""
    ys, xs = np.nonzero(allowed)
    if len(ys) == 0:
        return None
    yy, xx = grid(allowed.shape)
    for _ in range(60):
        i = int(rng.integers(len(ys)))
        cy, cx = float(ys[i]) + float(rng.uniform(-0.5, 0.5)), float(xs[i]) + float(rng.uniform(-0.5, 0.5))
        if taken and any(
            math.hypot(cy - f.center[0], cx - f.center[1]) < 2.2 * (radius + max(f.radii)) for f in taken
        ):
            continue
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        if disk.sum() and allowed[disk].mean() >= 0.9:
            return cy, cx
    return None


def sample_lesion(rng: np.random.Generator, kind: str, anatomy: Anatomy, mm_per_px: float) -> LesionSpec:
    """Samples the lesion of a case: size, shape, position (inside the brain) and type-specific details."""
    t = LESION_TYPES[kind]
    shape = str(rng.choice(t.shapes))
    edema = bool(rng.choice(t.edema))
    extra: dict[str, Any] = {"texture_seed": int(rng.integers(2**31))}
    size = anatomy.image.shape[0]
    radius_limit = 0.3 * min(anatomy.axes)

    def focus(center: tuple[float, float], radius: float) -> Focus:
        ratio = float(rng.uniform(1.25, 1.5)) if shape == "oval" else float(rng.uniform(1.0, 1.12))
        return Focus(center, (radius * ratio, radius), float(rng.uniform(0, math.pi)), _harmonics(rng, shape))

    if kind == "multifocal_small":
        n = int(rng.integers(3, 7))
        foci: list[Focus] = []
        for _ in range(n):
            radius = float(rng.uniform(*t.diameter_mm)) / mm_per_px / 2
            center = _place(rng, anatomy.brain, radius * 1.3, foci)
            if center is not None:
                foci.append(focus(center, radius))
        if not foci:
            foci.append(focus(anatomy.center, 3.0))
        return LesionSpec(kind, shape, edema, foci, extra)

    radius = min(float(rng.uniform(*t.diameter_mm)) / mm_per_px / 2, radius_limit)
    if kind == "extra_axial_dural":
        phi = float(rng.uniform(0, 2 * math.pi))
        cos, sin = math.cos(anatomy.angle), math.sin(anatomy.angle)
        u, v = anatomy.axes[1] * math.cos(phi) * 0.99, anatomy.axes[0] * math.sin(phi) * 0.99
        base = (anatomy.center[0] + sin * u + cos * v, anatomy.center[1] + cos * u - sin * v)
        dy, dx = anatomy.center[0] - base[0], anatomy.center[1] - base[1]
        norm = math.hypot(dy, dx) or 1.0
        normal = (dy / norm, dx / norm)
        extra.update(base=base, normal=normal, half_width=radius * float(rng.uniform(1.2, 1.5)), depth=radius)
        center = (base[0] + normal[0] * radius / 2, base[1] + normal[1] * radius / 2)
        return LesionSpec(kind, shape, edema, [Focus(center, (radius, radius))], extra)

    center = None
    while center is None and radius > 2.0:
        center = _place(rng, anatomy.brain, radius * (1.0 if kind == "diffuse_infiltrative" else 1.15))
        if center is None:
            radius *= 0.85
    if center is None:
        center = anatomy.center
    if kind == "cystic_mural_nodule":
        extra.update(
            nodule_angle=float(rng.uniform(0, 2 * math.pi)), nodule_rel=float(rng.uniform(0.28, 0.38))
        )
    elif kind == "ring_enhancing":
        extra.update(wall=float(rng.uniform(0.22, 0.38)))
    elif kind == "calcified":
        k = int(rng.integers(4, 9))
        extra.update(
            speckles=[(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.6, 0.6))) for _ in range(k)]
        )
    elif kind == "diffuse_infiltrative":
        extra.update(field_sigma=size / 22)
    return LesionSpec(kind, shape, edema, [focus(center, radius)], extra)


def _focus_radius(f: Focus, yy: np.ndarray, xx: np.ndarray, scale: float) -> np.ndarray:
    r, theta = ellipse_radius(yy, xx, f.center, (f.radii[0] * scale, f.radii[1] * scale), f.angle)
    bump = np.ones_like(r)
    for k, amp, phase in f.harmonics:
        bump += amp * np.cos(k * theta + phase)
    return r / bump


def _paint(image: np.ndarray, alpha: np.ndarray, target: np.ndarray | float) -> np.ndarray:
    return image + alpha * (target - image)


def render_lesion(
    spec: LesionSpec, anatomy: Anatomy, image: np.ndarray, scale: float = 1.0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draws ``spec`` at ``scale`` onto ``image`` (a copy of the anatomy, possibly displaced).

    Returns:
        The new image and one boolean mask per lesion component (one per focus; one for the others).
    """
    pal = anatomy.palette
    shape = image.shape
    yy, xx = grid(shape)
    tex_rng = np.random.default_rng(spec.extra["texture_seed"])
    texture = 1.0 + 0.05 * smooth_noise(tex_rng, shape, 1.5 * shape[0] / 256)
    inside = gaussian_blur(anatomy.intracranial.astype(np.float32), 1.0)
    out = image.astype(np.float32, copy=True)
    kind = spec.kind
    f = spec.foci[0]

    if kind == "multifocal_small":
        masks = []
        for focus in spec.foci:
            r = _focus_radius(focus, yy, xx, scale)
            out = _paint(out, (1 - smoothstep(0.85, 1.1, r)) * inside, pal["bright"] * texture)
            masks.append(r <= 1.0)
        return out, masks

    if kind == "extra_axial_dural":
        by, bx = spec.extra["base"]
        ny, nx = spec.extra["normal"]
        a, b = spec.extra["half_width"] * scale, spec.extra["depth"] * scale
        dy, dx = yy - by, xx - bx
        v = dy * ny + dx * nx  # depth, inwards
        u = dy * nx - dx * ny  # along the dura
        rr = np.sqrt((u / a) ** 2 + (np.maximum(v, 0) / b) ** 2)
        slab = (v >= -0.6 * b).astype(np.float32)
        alpha = (1 - smoothstep(0.92, 1.05, rr)) * slab * inside
        if spec.edema:
            halo = (1 - smoothstep(1.0, 1.6, rr)) * slab * inside * 0.6
            out = _paint(out, halo, pal["edema"])
        out = _paint(out, alpha, pal["bright"] * texture)
        tail = (
            (1 - smoothstep(a, 1.8 * a, np.abs(u)))
            * (np.abs(v) < 1.5 + 0.01 * shape[0])
            * (np.abs(u) >= a * 0.9)
        )
        out = _paint(out, 0.75 * tail * inside, pal["bright"])
        return out, [alpha > 0.5]

    r = _focus_radius(f, yy, xx, scale)
    lesion = (1 - smoothstep(0.92, 1.05, r)) * inside
    if spec.edema and kind != "diffuse_infiltrative":
        halo = (1 - smoothstep(1.0, 2.0, r)) * inside * 0.85
        out = _paint(out, halo, pal["edema"])

    if kind == "ring_enhancing":
        wall = spec.extra["wall"]
        out = _paint(out, lesion, pal["bright"] * texture)
        core = 1 - smoothstep(1 - wall - 0.08, 1 - wall + 0.04, r)
        out = _paint(out, core, pal["dark"] * texture)
        return out, [r <= 1.0]
    if kind == "solid_homogeneous":
        out = _paint(out, lesion, pal["bright"] * texture)
        return out, [r <= 1.0]
    if kind == "cystic_mural_nodule":
        out = _paint(out, lesion, 0.85 * pal["bright"])
        out = _paint(out, 1 - smoothstep(0.8, 0.9, r), pal["fluid"])
        angle = spec.extra["nodule_angle"]
        reach = 0.72 * max(f.radii) * scale
        cy, cx = f.center[0] + reach * math.sin(angle), f.center[1] + reach * math.cos(angle)
        nr = np.hypot(yy - cy, xx - cx) / max(spec.extra["nodule_rel"] * min(f.radii) * scale, 1.0)
        out = _paint(out, (1 - smoothstep(0.9, 1.05, nr)) * inside, pal["bright"] * texture)
        return out, [(r <= 1.0) | ((nr <= 1.0) & (inside > 0.5))]
    if kind == "calcified":
        out = _paint(out, 0.45 * (1 - smoothstep(1.0, 1.4, r)), pal["dark"])  # blooming
        out = _paint(out, lesion, pal["dark"])
        radius = max(f.radii) * scale
        for sy, sx in spec.extra["speckles"]:
            d = np.hypot(yy - f.center[0] - sy * radius, xx - f.center[1] - sx * radius) / max(
                0.2 * radius, 0.8
            )
            out = _paint(out, (1 - smoothstep(0.8, 1.1, d)) * lesion, pal["calc"])
        return out, [r <= 1.0]
    if kind == "diffuse_infiltrative":
        field_rng = np.random.default_rng(spec.extra["texture_seed"] + 1)
        wobble = smooth_noise(field_rng, shape, spec.extra["field_sigma"])
        # Soft limits everywhere: an infiltrative lesion fades into the white matter.
        brain = gaussian_blur(anatomy.brain.astype(np.float32), 3.0 * shape[0] / 256)
        alpha = (1 - smoothstep(0.45, 1.4, r + 0.3 * wobble)) * brain
        out = _paint(out, 0.9 * alpha, pal["edema"] * texture)
        return out, [alpha > 0.5]
    raise ValueError(f"unknown lesion kind {kind!r}")
