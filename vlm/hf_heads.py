"""The small heads the ``hf:`` backend puts on a Hugging Face VLM, and their ``anomaly_head.safetensors`` file.

* heatmap head: vision tokens (as fed to the language model) on their patch grid -> per-patch anomaly logit;
* score head: a linear layer on the last hidden state at the ``<Ano>`` position -> anomaly logit;
* change head: a linear layer on the last hidden state at the ``<Diff>`` position -> one logit per change label.

The file also carries the trained ``<Ano>``/``<Diff>`` embedding rows, so a fine-tune can be shipped as this one
file next to an untouched base model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from vlm.types import CHANGE_LABELS
from zebra.errors import ModelError

log = logging.getLogger(__name__)

HEADS_FILE = "anomaly_head.safetensors"
HEADS_FORMAT = "zebra-hf-anomaly-head/1"
TOKEN_ROWS_KEY = "token_embeddings"


class AnomalyHeads(nn.Module):
    """Heatmap, ``<Ano>`` score and ``<Diff>`` change heads.

    Args:
        hidden_size: The language model's hidden size (vision tokens are projected to it too).
        heatmap_hidden: Width of the heatmap head's hidden layer.
        seed: Seed of the initial weights, so an untrained backend is reproducible.
    """

    def __init__(self, hidden_size: int, *, heatmap_hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.heatmap_hidden = heatmap_hidden
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.heatmap_proj = nn.Sequential(
                nn.LayerNorm(hidden_size), nn.Linear(hidden_size, heatmap_hidden), nn.GELU()
            )
            self.heatmap_conv = nn.Conv2d(heatmap_hidden, 1, kernel_size=3, padding=1)
            self.score = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, 1))
            self.change = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, len(CHANGE_LABELS)))

    def heatmap_logits(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Per-patch anomaly logits ``(rows, cols)`` from vision tokens ``(rows*cols, hidden)`` in row-major order."""
        rows, cols = grid
        x = self.heatmap_proj(features.float())  # (n, h)
        x = x.T.reshape(1, self.heatmap_hidden, rows, cols)
        return self.heatmap_conv(x)[0, 0]

    def score_logit(self, hidden: torch.Tensor) -> torch.Tensor:
        """Anomaly logit from the ``<Ano>`` hidden state(s) ``(k, hidden)``; several positions are averaged."""
        return self.score(hidden.float()).mean()

    def change_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Change logits ``(len(CHANGE_LABELS),)`` from the ``<Diff>`` hidden state(s) ``(k, hidden)``."""
        return self.change(hidden.float()).mean(0)


def save_heads(
    path: Path, heads: AnomalyHeads, *, token_rows: torch.Tensor, tokens: tuple[str, ...], model_type: str
) -> Path:
    """Writes the heads and the new tokens' embedding rows to ``path`` (safetensors, metadata as JSON strings)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in heads.state_dict().items()}
    tensors[TOKEN_ROWS_KEY] = token_rows.detach().float().cpu().contiguous()
    metadata = {
        "format": HEADS_FORMAT,
        "hidden_size": str(heads.hidden_size),
        "heatmap_hidden": str(heads.heatmap_hidden),
        "tokens": json.dumps(list(tokens)),
        "change_labels": json.dumps(list(CHANGE_LABELS)),
        "model_type": model_type,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)  # atomic: a crash never leaves a half-written heads file
    log.info("saved VLM heads to %s", path)
    return path


def load_heads(
    path: Path, *, hidden_size: int, tokens: tuple[str, ...]
) -> tuple[AnomalyHeads, torch.Tensor | None]:
    """Reads a heads file written by :func:`save_heads`.

    Returns:
        The heads and the saved token rows (``None`` when the file has none).

    Raises:
        ModelError: When the file is unreadable or was made for another model size or token set.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(
            f"Cannot read VLM heads {path}: {exc}", hint=f"Delete or replace {path.name}."
        ) from exc
    hint = f"Delete {path.name} to start from untrained heads, or retrain them for this model."
    if metadata.get("format") != HEADS_FORMAT:
        raise ModelError(
            f"{path} is not a Zebra VLM heads file (format {metadata.get('format')!r}).", hint=hint
        )
    if int(metadata.get("hidden_size", -1)) != hidden_size:
        raise ModelError(
            f"{path} was trained for hidden size {metadata.get('hidden_size')}, the model has {hidden_size}.",
            hint=hint,
        )
    if json.loads(metadata.get("change_labels", "[]")) != list(CHANGE_LABELS):
        raise ModelError(f"{path} has change labels other than {list(CHANGE_LABELS)}.", hint=hint)
    heads = AnomalyHeads(hidden_size, heatmap_hidden=int(metadata.get("heatmap_hidden", 64)))
    rows = tensors.pop(TOKEN_ROWS_KEY, None)
    try:
        heads.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not match the heads layout: {exc}", hint=hint) from exc
    if rows is not None and (
        json.loads(metadata.get("tokens", "[]")) != list(tokens)
        or tuple(rows.shape) != (len(tokens), hidden_size)
    ):
        raise ModelError(f"{path} holds embeddings for other tokens than {list(tokens)}.", hint=hint)
    return heads, rows
