"""Inference-only speed-up: folding batch-norm into the preceding convolutions (and fusing ReLUs)."""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def _groups_of_bottleneck(prefix: str, block: nn.Module) -> list[list[str]]:
    groups = [
        [f"{prefix}.conv1", f"{prefix}.bn1", f"{prefix}.act1"],
        [f"{prefix}.conv2", f"{prefix}.bn2", f"{prefix}.act2"],
    ]
    groups.append([f"{prefix}.conv3", f"{prefix}.bn3"])
    if getattr(block, "downsample", None) is not None:
        groups.append([f"{prefix}.downsample.0", f"{prefix}.downsample.1"])
    return groups


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Folds every conv + batch-norm (+ ReLU) of a :class:`~vlm.model.network.ZebraVLM` in place.

    The model must be in eval mode and is not trainable afterwards (the backend's copy only). Outputs are
    unchanged up to float rounding.
    """
    from torch.ao.quantization import fuse_modules

    if model.training:
        raise ValueError("fuse_for_inference needs a model in eval mode")
    v = model.visual
    groups = [["visual.conv1", "visual.bn1", "visual.act1"], ["visual.conv2", "visual.bn2", "visual.act2"],
              ["visual.conv3", "visual.bn3", "visual.act3"]]  # fmt: skip
    for layer_name in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(v, layer_name)):
            groups += _groups_of_bottleneck(f"visual.{layer_name}.{i}", block)
    groups += [["smooth8.0", "smooth8.1", "smooth8.2"], ["smooth16.0", "smooth16.1", "smooth16.2"]]
    groups += [["box_trunk.0", "box_trunk.1", "box_trunk.2"]]
    with torch.no_grad():
        fuse_modules(model, groups, inplace=True)
    return model
