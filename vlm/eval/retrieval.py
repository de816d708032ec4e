"""Image-to-caption retrieval recall of the CLIP stage (MedPix dev), trained vs a random encoder."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vlm.eval.metrics import recall_at_k
from vlm.preprocess import normalize_batch


@torch.no_grad()
def embed_pairs(bundle, data, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Image and caption embeddings of the captioned rows of ``data`` and each image's caption column.

    Identical captions share a column, so a query counts as a hit when any copy ranks in the top ``k``.
    """
    from vlm.model.tokenizer import tokenizer_for

    bundle.clip.eval()
    rows = [i for i, c in enumerate(data.captions) if c.strip()]
    captions = list(dict.fromkeys(data.captions[i] for i in rows))
    column = {c: j for j, c in enumerate(captions)}
    tokenizer = tokenizer_for(bundle.vlm.config.arch)
    images, texts = [], []
    for start in range(0, len(rows), batch_size):
        idx = np.array(rows[start : start + batch_size])
        x = torch.from_numpy(data.images[idx].astype(np.float32) / 255.0)
        images.append(bundle.vlm.embed(normalize_batch(x)).numpy())
    for start in range(0, len(captions), batch_size):
        tokens = tokenizer(captions[start : start + batch_size])
        texts.append(F.normalize(bundle.clip.encode_text(tokens), dim=-1).numpy())
    return np.concatenate(images), np.concatenate(texts), [column[data.captions[i]] for i in rows]


def image_to_text_recall(bundle, data, *, k: int = 10) -> dict[str, float]:
    """Recall@1/5/k of image-to-caption retrieval over the captioned rows of ``data``."""
    images, texts, targets = embed_pairs(bundle, data)
    sim = images @ texts.T
    return {
        "recall@1": recall_at_k(sim, targets, 1),
        "recall@5": recall_at_k(sim, targets, 5),
        f"recall@{k}": recall_at_k(sim, targets, k),
        "n_queries": float(len(targets)),
        "n_captions": float(texts.shape[0]),
    }
