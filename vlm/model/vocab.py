"""Categorical attribute vocabularies of the built-in model's attribute heads.

The order of each tuple is the order of the head's logits; changing it invalidates checkpoints (the
checkpoint JSON stores the vocabularies it was trained with, and those win at load time).
"""

from __future__ import annotations

#: Attribute head name -> class names. ``side`` and ``region`` together make :attr:`Attributes.site`.
ATTRIBUTE_VOCAB: dict[str, tuple[str, ...]] = {
    "side": ("right", "left", "midline"),
    "region": (
        "frontal lobe",
        "parietal lobe",
        "temporal lobe",
        "occipital lobe",
        "periventricular white matter",
        "deep grey nuclei",
        "sellar region",
    ),
    "shape": ("round", "oval", "lobulated", "irregular", "lentiform"),
    "margin": ("well-defined", "ill-defined"),
    "signal": ("hyperintense", "hypointense", "mixed"),
    "enhancement": ("ring", "homogeneous", "nodular"),
    "multiplicity": ("solitary", "multiple"),
    "mass_effect": ("none", "mild", "moderate"),
}

#: Size classes from the largest diameter in mm (upper bounds, exclusive).
SIZE_CLASSES: tuple[tuple[str, float], ...] = (("small", 10.0), ("medium", 30.0), ("large", float("inf")))

#: Short signal word per synthetic lesion type (the generator's phrases are sentences).
SIGNAL_OF_TYPE: dict[str, str] = {
    "ring_enhancing": "mixed",
    "solid_homogeneous": "hyperintense",
    "cystic_mural_nodule": "mixed",
    "calcified": "hypointense",
    "diffuse_infiltrative": "hyperintense",
    "extra_axial_dural": "hyperintense",
    "multifocal_small": "hyperintense",
}

#: Enhancement pattern per synthetic lesion type, only meaningful on post-contrast (``T1c``) images.
ENHANCEMENT_OF_TYPE: dict[str, str] = {
    "ring_enhancing": "ring",
    "solid_homogeneous": "homogeneous",
    "cystic_mural_nodule": "nodular",
    "extra_axial_dural": "homogeneous",
    "multifocal_small": "nodular",
}


def size_class(size_mm: float | None) -> str | None:
    """``"small"``, ``"medium"`` or ``"large"`` for a diameter in mm (``None`` stays ``None``)."""
    if size_mm is None:
        return None
    for name, upper in SIZE_CLASSES:
        if size_mm < upper:
            return name
    return SIZE_CLASSES[-1][0]
