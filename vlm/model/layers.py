"""Building blocks: 2-D sine-cosine positions and learnable query tokens cross-attending to patches."""

from __future__ import annotations

import math

import torch
from torch import nn


def sincos_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes, ``(height * width, dim)`` (``dim`` divisible by 4)."""
    if dim % 4:
        raise ValueError(f"position code width {dim} must be divisible by 4")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    ys = ys.reshape(-1, 1) * omega
    xs = xs.reshape(-1, 1) * omega
    return torch.cat([ys.sin(), ys.cos(), xs.sin(), xs.cos()], dim=1)


class QueryTokens(nn.Module):
    """Learnable query tokens (``<Ano>`` or ``<Diff>``) that cross-attend to a feature map.

    Args:
        n_tokens: Number of tokens.
        dim: Token and feature width.
        heads: Attention heads.
        depth: Cross-attention + MLP rounds.
    """

    def __init__(self, n_tokens: int, dim: int, heads: int, depth: int = 2) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_tokens, dim) / math.sqrt(dim))
        self.norm_kv = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "norm_q": nn.LayerNorm(dim),
                        "attn": nn.MultiheadAttention(dim, heads, batch_first=True),
                        "norm_mlp": nn.LayerNorm(dim),
                        "mlp": nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)),
                    }
                )
            )

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attends to ``fmap`` ``(B, D, H, W)``.

        Returns:
            Tokens ``(B, K, D)`` and the last round's attention over positions ``(B, K, H*W)``.
        """
        b, d, h, w = fmap.shape
        kv = fmap.flatten(2).transpose(1, 2) + sincos_2d(h, w, d).to(fmap)
        kv = self.norm_kv(kv)
        tokens = self.queries.unsqueeze(0).expand(b, -1, -1)
        weights = fmap.new_zeros(b, tokens.shape[1], h * w)
        for block in self.blocks:
            attended, weights = block["attn"](block["norm_q"](tokens), kv, kv, need_weights=True)
            tokens = tokens + attended
            tokens = tokens + block["mlp"](block["norm_mlp"](tokens))
        return tokens, weights


def pool_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Mean and max over tokens, concatenated: ``(B, 2D)``."""
    return torch.cat([tokens.mean(dim=1), tokens.amax(dim=1)], dim=1)
