"""Losses of the training stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm.train.targets import BoxTargets


def focal_heat_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of centres (at least 1)."""
    logits = logits.float()
    pos = target.eq(1).float()
    neg_weight = (1 - target).pow(4)
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = ((1 - p).pow(2) * log_p * pos).sum()
    neg_loss = (p.pow(2) * log_not_p * neg_weight * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def _gather(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` at flat ``index`` ``(B, K)`` -> ``(B, K, C)``."""
    b, c = maps.shape[:2]
    flat = maps.view(b, c, -1)
    return flat.gather(2, index.unsqueeze(1).expand(-1, c, -1)).transpose(1, 2)


def box_losses(out: dict[str, torch.Tensor], targets: BoxTargets) -> dict[str, torch.Tensor]:
    """Centre focal loss and masked L1 losses on log-size and offset."""
    n = targets.mask.sum().clamp(min=1.0)
    m = targets.mask.unsqueeze(2)
    size = _gather(out["box_size"], targets.index)
    off = _gather(out["offset"], targets.index)
    return {
        "heat": focal_heat_loss(out["center"], targets.heat),
        "size": (F.smooth_l1_loss(size, targets.size, reduction="none", beta=0.1) * m).sum() / (2 * n),
        "offset": (F.l1_loss(off, targets.offset, reduction="none") * m).sum() / (2 * n),
    }


def anomaly_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE on images whose label is known (label -1 is ignored)."""
    known = labels >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known].float())


def attribute_loss(
    logits: dict[str, torch.Tensor], labels: torch.Tensor, keys: tuple[str, ...]
) -> torch.Tensor:
    """Mean cross-entropy over attribute heads with at least one known label (-1 ignored)."""
    losses = []
    for j, key in enumerate(keys):
        target = labels[:, j].long()
        if bool((target >= 0).any()):
            losses.append(F.cross_entropy(logits[key], target, ignore_index=-1))
    if not losses:
        return next(iter(logits.values())).sum() * 0.0
    return torch.stack(losses).mean()


def size_loss(pred_log_mm: torch.Tensor, size_mm: torch.Tensor) -> torch.Tensor:
    """Smooth L1 on log size where known (NaN ignored)."""
    known = torch.isfinite(size_mm) & (size_mm > 0)
    if not bool(known.any()):
        return pred_log_mm.sum() * 0.0
    return F.smooth_l1_loss(pred_log_mm[known], size_mm[known].log(), beta=0.1)


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of normalised image/text embeddings (CLIP)."""
    logits = logit_scale.exp().clamp(max=100) * image @ text.t()
    labels = torch.arange(len(image))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
