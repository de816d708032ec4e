"""Batched, seeded image augmentation (geometry + intensity) that keeps boxes and masks consistent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Ranges of the random transforms (``0`` / equal bounds switch one off)."""

    flip: float = 0.5
    scale: tuple[float, float] = (0.85, 1.2)
    shift: float = 0.08  # fraction of the side
    gamma: tuple[float, float] = (0.7, 1.4)
    contrast: tuple[float, float] = (0.8, 1.2)
    brightness: float = 0.06
    noise: float = 0.03


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def augment(
    images: torch.Tensor,
    boxes: list[np.ndarray],
    gen: torch.Generator,
    cfg: AugmentConfig,
    masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[np.ndarray], torch.Tensor | None, torch.Tensor]:
    """Randomly flips, zooms, shifts and re-contrasts a batch.

    Args:
        images: ``(B, S, S)`` float in [0, 1].
        boxes: Per image ``(k, 4)`` model-pixel boxes.
        gen: The random stream (seeded per step, so resumed runs see the same batches).
        cfg: Ranges.
        masks: Optional ``(B, S, S)`` masks warped alike.

    Returns:
        Images, boxes (boxes mostly outside the image are dropped), masks and the per-image flip flags.
    """
    b, s, _ = images.shape
    flips = torch.rand(b, generator=gen) < cfg.flip
    zoom = _uniform(gen, b, *cfg.scale)
    tx = _uniform(gen, b, -cfg.shift, cfg.shift) * 2
    ty = _uniform(gen, b, -cfg.shift, cfg.shift) * 2
    sign = torch.where(flips, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = sign / zoom
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, (b, 1, s, s), align_corners=False)
    out = F.grid_sample(
        images.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[:, 0]
    if masks is not None:
        masks = (
            F.grid_sample(masks.unsqueeze(1).float(), grid, mode="bilinear", align_corners=False)[:, 0] > 0.5
        )
    new_boxes = []
    for i, bx in enumerate(boxes):
        if len(bx) == 0:
            new_boxes.append(bx)
            continue
        a = float(theta[i, 0, 0])
        n = bx.astype(np.float64) * 2.0 / s - 1.0  # normalised corner coordinates
        x = (n[:, [0, 2]] - float(tx[i])) / a
        y = (n[:, [1, 3]] - float(ty[i])) * float(zoom[i])
        x.sort(axis=1)
        px = (x + 1.0) * s / 2.0
        py = (y + 1.0) * s / 2.0
        full = (px[:, 1] - px[:, 0]) * (py[:, 1] - py[:, 0])
        px, py = px.clip(0, s), py.clip(0, s)
        kept = (px[:, 1] - px[:, 0]) * (py[:, 1] - py[:, 0])
        ok = kept >= 0.4 * np.maximum(full, 1e-6)
        new_boxes.append(np.stack([px[:, 0], py[:, 0], px[:, 1], py[:, 1]], 1)[ok].astype(np.float32))
    # Intensity: gamma, contrast about the mean, brightness, noise.
    gamma = _uniform(gen, b, *cfg.gamma).view(b, 1, 1)
    contrast = _uniform(gen, b, *cfg.contrast).view(b, 1, 1)
    bright = _uniform(gen, b, -cfg.brightness, cfg.brightness).view(b, 1, 1)
    sigma = _uniform(gen, b, 0.0, cfg.noise).view(b, 1, 1)
    out = out.clamp(0, 1).pow(gamma)
    mean = out.mean(dim=(1, 2), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    out = out + sigma * torch.randn(out.shape, generator=gen)
    return out.clamp(0, 1), new_boxes, masks, flips
