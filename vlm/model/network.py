"""The built-in anomaly-aware VLM (MEDIC-AD-style ``<Ano>`` and ``<Diff>`` tokens on an open_clip encoder).

Data flow for one image ``x`` (``B x 3 x S x S``, letterboxed, CLIP-normalised):

* open_clip ModifiedResNet: stem -> layer1 -> layer2 (stride 8) -> layer3 (stride 16) -> layer4 ->
  attention pool = the image embedding (the same vector the retrieval image index stores);
* a small FPN neck makes ``p8`` (stride 8) and ``p16`` (stride 16) maps of width ``dim``;
* ``<Ano>`` query tokens cross-attend to ``p16``; pooled, they feed the anomaly score head and the
  attribute heads, and FiLM-condition the box head;
* the anchor-free box head (CenterNet-style) on ``p8``: centre-ness logits (which are also the anomaly
  heatmap), box size (log, in stride units) and sub-cell offsets.

For a prior/current pair, ``<Diff>`` tokens attend to the difference of the aligned feature maps and feed
the change head (worsening / stable / improved) and a difference heatmap head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vlm.model.config import CHANGE_CUES, VLMConfig, clip_model_config, register_arch
from vlm.model.layers import QueryTokens, pool_tokens

#: Output stride of the box head and heatmap.
STRIDE = 8


def change_cue(center_current: torch.Tensor, center_prior: torch.Tensor, kind: str) -> torch.Tensor:
    """Size-change cue ``(B, n)`` from the centre logits of the aligned current and prior images.

    ``"mass"``: log-ratio of the summed heatmaps (``n = 1``). ``"excess"``: log-ratios of the heat mass
    above each threshold of :data:`vlm.model.config.CHANGE_CUES` (``n = 4``); 0 means no change.
    """
    if kind not in CHANGE_CUES:
        raise ValueError(f"unknown change cue {kind!r}; known: {sorted(CHANGE_CUES)}")
    hc = torch.sigmoid(center_current).flatten(1)
    hp = torch.sigmoid(center_prior).flatten(1)
    thresholds = CHANGE_CUES[kind]
    if thresholds is None:
        return torch.log((hc.sum(1) + 1e-3) / (hp.sum(1) + 1e-3)).unsqueeze(1)
    out = [
        torch.log(((hc - t).clamp(min=0).sum(1) + 1e-2) / ((hp - t).clamp(min=0).sum(1) + 1e-2))
        for t in thresholds
    ]
    return torch.stack(out, dim=1)


def make_change_head(config: VLMConfig) -> nn.Module:
    """The change classifier: pooled ``<Diff>`` tokens, ``<Ano>`` token change and the size-change cue."""
    thresholds = CHANGE_CUES[config.change_cue]
    n_cue = 1 if thresholds is None else len(thresholds)
    d = config.dim
    return nn.Sequential(nn.Linear(4 * d + n_cue, d), nn.GELU(), nn.Linear(d, 3))


def create_clip(config: VLMConfig) -> nn.Module:
    """A randomly initialised open_clip CLIP model of ``config.arch`` (seed the torch RNG first)."""
    import open_clip

    arch = register_arch(config)
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=None)
    return model


@dataclass
class Features:
    """Encoder + neck outputs of one batch."""

    p8: torch.Tensor  # (B, D, S/8, S/8)
    p16: torch.Tensor  # (B, D, S/16, S/16)
    embedding: torch.Tensor | None  # (B, E), not normalised; None when not computed
    trunk: torch.Tensor | None = None  # (B, 2 * C16): channel means and stds of layer3 (for the gate)


class ZebraVLM(nn.Module):
    """Encoder, ``<Ano>`` tokens, box/heatmap/anomaly/attribute heads and the ``<Diff>`` change module.

    Args:
        config: Network hyper-parameters.
        visual: An open_clip ModifiedResNet to use (shared with a CLIP model during contrastive
            training); ``None`` builds one from ``config``.
    """

    def __init__(self, config: VLMConfig, visual: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if visual is None:
            visual = create_clip(config).visual
        if not hasattr(visual, "layer4") or not hasattr(visual, "attnpool"):
            raise ValueError(f"{config.arch} is not a ModifiedResNet (open_clip 'layers' list) config")
        self.visual = visual
        width = int(clip_model_config(config)["vision_cfg"]["width"])
        c8, c16, d = width * 8, width * 16, config.dim
        # Neck: lateral 1x1 convolutions, top-down sum, 3x3 smoothing.
        self.lat8 = nn.Conv2d(c8, d, 1)
        self.lat16 = nn.Conv2d(c16, d, 1)
        self.smooth8 = nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.BatchNorm2d(d), nn.ReLU(inplace=True))
        self.smooth16 = nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.BatchNorm2d(d), nn.ReLU(inplace=True))
        # <Ano> tokens and what they feed.
        self.ano = QueryTokens(config.n_ano_tokens, d, config.heads)
        self.anomaly_head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))
        # Sorted: the config may come back from JSON with its keys in another order, and the parameter order
        # must not change (optimizer states are positional).
        self.attr_heads = nn.ModuleDict(
            {k: nn.Linear(2 * d, len(config.attributes[k])) for k in sorted(config.attributes)}
        )
        self.size_head = nn.Linear(2 * d, 1)  # log(largest diameter in mm)
        self.film = nn.Linear(2 * d, 2 * d)
        # Box head at stride 8; the centre-ness logits double as the anomaly heatmap.
        self.box_trunk = nn.Sequential(
            nn.Conv2d(d + 1, d, 3, padding=1),
            nn.BatchNorm2d(d),
            nn.ReLU(inplace=True),
            nn.Conv2d(d, d, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.center = nn.Conv2d(d, 1, 1)
        self.box_size = nn.Conv2d(d, 2, 1)
        self.offset = nn.Conv2d(d, 2, 1)
        # <Diff> tokens on aligned feature differences.
        self.diff_in = nn.Sequential(nn.Conv2d(3 * d, d, 1), nn.GELU())
        self.diff = QueryTokens(config.n_diff_tokens, d, config.heads, depth=1)
        self.change_head = make_change_head(config)
        self.diff_heat = nn.Sequential(
            nn.Conv2d(2 * d, d, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(d, 1, 1)
        )
        self._init_heads()

    def _init_heads(self) -> None:
        # CenterNet's prior: few positives, so the centre logits start at sigmoid ~0.1.
        nn.init.constant_(self.center.bias, -2.19)
        nn.init.constant_(self.diff_heat[-1].bias, -2.19)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    # ----------------------------------------------------------------- encoder
    def encode(self, x: torch.Tensor, *, with_embedding: bool = True) -> Features:
        """Runs the encoder and the neck.

        Args:
            x: ``(B, 3, S, S)`` normalised images. Sizes other than ``config.image_size`` work for the
                heads (fully convolutional) but need ``with_embedding=False`` (the attention pool has
                fixed positions).
            with_embedding: Also run layer4 and the attention pool (the retrieval embedding).
        """
        v = self.visual
        h = v.stem(x)
        h = v.layer1(h)
        c8 = v.layer2(h)
        c16 = v.layer3(c8)
        emb = v.attnpool(v.layer4(c16)) if with_embedding else None
        p16 = self.smooth16(self.lat16(c16))
        p8 = self.smooth8(self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest"))
        trunk = torch.cat([c16.mean(dim=(2, 3)), c16.std(dim=(2, 3))], dim=1)
        return Features(p8=p8, p16=p16, embedding=emb, trunk=trunk)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings (the open_clip ``encode_image(normalize=True)`` vector)."""
        v = self.visual
        h = v.layer3(v.layer2(v.layer1(v.stem(x))))
        return F.normalize(v.attnpool(v.layer4(h)), dim=-1)

    # ------------------------------------------------------------- image heads
    def heads(self, feats: Features) -> dict[str, torch.Tensor]:
        """``<Ano>`` tokens and every single-image head."""
        tokens, attn = self.ano(feats.p16)
        pooled = pool_tokens(tokens)
        gamma, beta = self.film(pooled).chunk(2, dim=1)
        p8 = feats.p8 * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        # Token-to-patch similarity: where any <Ano> token "looks like" the patch.
        sim = torch.einsum("bdhw,bkd->bkhw", F.normalize(p8, dim=1), F.normalize(tokens, dim=2)).amax(1, True)
        trunk = self.box_trunk(torch.cat([p8, sim], dim=1))
        return {
            "tokens": tokens,
            "token_attn": attn,
            "anomaly": self.anomaly_head(pooled).squeeze(1),
            "attributes": {k: head(pooled) for k, head in self.attr_heads.items()},
            "size_log_mm": self.size_head(pooled).squeeze(1),
            "center": self.center(trunk),
            "box_size": self.box_size(trunk),
            "offset": self.offset(trunk),
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All single-image outputs plus ``embedding`` (normalised)."""
        feats = self.encode(x)
        out = self.heads(feats)
        out["embedding"] = F.normalize(feats.embedding, dim=-1)
        out["features"] = feats  # type: ignore[assignment]
        return out

    # ------------------------------------------------------------- change
    def change(
        self,
        current: Features,
        prior: Features,
        current_out: dict[str, torch.Tensor],
        prior_out: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``<Diff>`` tokens on the aligned feature difference: change logits and difference heatmap."""
        d16 = current.p16 - prior.p16
        diff_map = self.diff_in(torch.cat([d16, d16.abs(), current.p16], dim=1))
        tokens, _ = self.diff(diff_map)
        ano_delta = pool_tokens(current_out["tokens"]) - pool_tokens(prior_out["tokens"])
        cue = change_cue(current_out["center"], prior_out["center"], self.config.change_cue)
        logits = self.change_head(torch.cat([pool_tokens(tokens), ano_delta, cue], dim=1))
        d8 = current.p8 - prior.p8
        heat = self.diff_heat(torch.cat([d8.abs(), current.p8], dim=1))
        return {"change": logits, "diff_heat": heat}
