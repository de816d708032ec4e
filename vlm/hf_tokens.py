"""The ``<Ano>`` and ``<Diff>`` special tokens: adding them to a Hugging Face VLM and training only their
input-embedding rows (every other row, and every other weight, stays frozen)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch

log = logging.getLogger(__name__)

ANO_TOKEN = "<Ano>"
DIFF_TOKEN = "<Diff>"
#: The tokens the backend adds, in a fixed order (rows of ``token_embeddings`` in the heads file).
NEW_TOKENS: tuple[str, ...] = (ANO_TOKEN, DIFF_TOKEN)


def ensure_tokens(model: Any, tokenizer: Any, *, seed: int = 0) -> tuple[dict[str, int], bool]:
    """Adds ``<Ano>``/``<Diff>`` to the tokenizer if absent and makes the embedding matrix large enough.

    New rows start at the mean input embedding plus a little seeded noise (so the two tokens differ); when
    the tokens already exist (a fine-tuned folder) their rows are left as saved.

    Returns:
        ``(token -> id, added)`` where ``added`` says whether the tokens were new.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    missing = [t for t in NEW_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, unk)]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in NEW_TOKENS}
    emb = model.get_input_embeddings()
    rows = int(emb.weight.shape[0])
    needed = max(len(tokenizer), max(ids.values()) + 1)
    if needed > rows:
        # Qwen checkpoints pad the vocabulary beyond the tokenizer; only grow, never shrink.
        model.resize_token_embeddings(needed, mean_resizing=False)
        emb = model.get_input_embeddings()
    if missing:
        with torch.no_grad():
            weight = emb.weight
            base = weight[: min(rows, len(tokenizer) - len(missing))].float()
            mean, std = base.mean(0), base.std(0).mean()
            gen = torch.Generator().manual_seed(seed)
            for token in missing:
                noise = torch.randn(weight.shape[1], generator=gen) * 0.1 * std
                weight[ids[token]] = (mean + noise.to(mean.device)).to(weight.dtype)
        log.info("added tokens %s at ids %s", missing, [ids[t] for t in missing])
    return ids, bool(missing)


def token_rows(model: Any, ids: dict[str, int]) -> torch.Tensor:
    """The current embedding rows of :data:`NEW_TOKENS`, float32 ``(2, hidden)`` on the CPU."""
    weight = model.get_input_embeddings().weight
    return torch.stack([weight[ids[t]] for t in NEW_TOKENS]).detach().float().cpu()


def set_token_rows(model: Any, ids: dict[str, int], rows: torch.Tensor) -> None:
    """Writes saved rows (``(2, hidden)``, :data:`NEW_TOKENS` order) into the embedding matrix."""
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        for i, token in enumerate(NEW_TOKENS):
            weight[ids[token]] = rows[i].to(weight.device, weight.dtype)


@contextlib.contextmanager
def token_training(model: Any, ids: dict[str, int]) -> Iterator[torch.nn.Parameter]:
    """Freezes the model except the new tokens' embedding rows, for the duration of the block.

    The whole embedding matrix gets ``requires_grad`` (PyTorch cannot mark single rows), and a gradient
    hook zeroes every row but the new tokens', so an optimiser without weight decay leaves them untouched.

    Yields:
        The embedding weight to hand to the optimiser.
    """
    saved = {name: p.requires_grad for name, p in model.named_parameters()}
    weight = model.get_input_embeddings().weight
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    mask[list(ids.values())] = 1
    model.requires_grad_(False)
    weight.requires_grad_(True)
    handle = weight.register_hook(lambda grad: grad * mask)
    try:
        yield weight
    finally:
        handle.remove()
        weight.grad = None
        for name, p in model.named_parameters():
            p.requires_grad_(saved.get(name, False))
