"""Evaluation of the tumour-type head on a labelled brain-tumour split (``zebra vlm eval --tumour-type DIR``).

For every image of the split with one label (glioma, meningioma, pituitary adenoma, no tumour), through the
checkpoint's own inference path (the input gate is not applied: these are all head MRIs):

- ``head``: accuracy of the type head's top class over all images, and over those it states (probability at
  least its threshold), with the share stated, and recall per class;
- ``domain``: the share of the images the domain head places inside the tumour set's domain;
- ``as_said``: what the caption and the agent get, every gate applied (domain, stated MR, threshold): the share
  of tumour images named, how often a named type is right, and how many tumour-free images got a type.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def evaluate_tumour_type(
    vlm: Any, root: str | Path, *, split: str = "valid", limit: int | None = None
) -> dict[str, Any]:
    """Runs the protocol of the module docstring.

    Raises:
        ConfigError: The checkpoint has no tumour-type heads.
    """
    from vlm.eval.findings_eval import _accuracy
    from vlm.findings import IN_DOMAIN, NO_TUMOUR, TUMOUR_DOMAIN, TUMOUR_GROUP, TUMOUR_TYPE
    from vlm.train.findings import image_features
    from vlm.train.tumour_type import labelled_tumour_images
    from zebra.errors import ConfigError

    model = getattr(vlm, "findings_model", None)
    if model is None or TUMOUR_TYPE not in model.heads or TUMOUR_DOMAIN not in model.heads:
        raise ConfigError(
            "This checkpoint has no tumour-type heads.", hint="Run `zebra vlm fit-tumour-type` first."
        )
    images = [im for im in labelled_tumour_images(root, split) if im.label is not None][:limit]
    feats = image_features(vlm, images)
    probs = model.probabilities(feats)
    head, domain = model.heads[TUMOUR_TYPE], model.heads[TUMOUR_DOMAIN]
    p = probs[TUMOUR_TYPE]
    pred = [head.classes[i] for i in p.argmax(1)]
    labels = [im.label for im in images]
    stated = p.max(1) >= head.threshold
    inside = probs[TUMOUR_DOMAIN][:, domain.classes.index(IN_DOMAIN)] >= domain.threshold
    named = [
        next((t.value for t in f.terms if t.group == TUMOUR_GROUP and t.stated), None)
        for f in model.from_probabilities(probs)
    ]
    tumour = np.array([y != NO_TUMOUR for y in labels])
    said = np.array([n is not None for n in named])
    right = np.array([n == y for n, y in zip(named, labels, strict=True)])
    return {
        "split": split,
        "n_images": len(images),
        "head": {
            **_accuracy(list(zip(pred, labels, stated.tolist(), strict=True))),
            "recall": {
                c: round(float(np.mean([q == c for q, y in zip(pred, labels, strict=True) if y == c])), 4)
                for c in head.classes
                if c in labels
            },
        },
        "domain": {"inside_share": round(float(inside.mean()), 4), "threshold": domain.threshold},
        "as_said": {
            "n_tumour_images": int(tumour.sum()),
            "named_share": round(float(said[tumour].mean()), 4) if tumour.any() else None,
            "named_accuracy": round(float(right[said].mean()), 4) if said.any() else None,
            "named_on_tumour_free": int((said & ~tumour).sum()),
        },
    }
