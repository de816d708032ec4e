"""BM25 keyword index over chunk texts, stored with bm25s's own pickle-free format.

bm25s's ``save(allow_pickle=False)`` writes ``.npy`` arrays and JSON only. Rows of the BM25 matrix follow
chunk order; ``vector_ids.npy`` maps a row to the chunk's ``vector_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

K1 = 1.5
B = 0.75
STOPWORDS = "en"
IDS_FILE = "vector_ids.npy"


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased word tokens without English stop words (the same rule for documents and queries)."""
    import bm25s

    return bm25s.tokenize(list(texts), lower=True, stopwords=STOPWORDS, return_ids=False, show_progress=False)


def build_bm25(
    texts: Sequence[str], vector_ids: Sequence[int], out_dir: Path, *, k1: float = K1, b: float = B
) -> dict:
    """Indexes ``texts`` and saves the index under ``out_dir``.

    Returns:
        The manifest entry ``{"dir", "k1", "b", "ntotal", "stopwords"}``.
    """
    import bm25s

    # bm25s logs every index build at DEBUG on its own logger.
    logging.getLogger("bm25s").setLevel(max(logging.INFO, logging.getLogger("bm25s").level))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(vector_ids, dtype=np.int64)
    if len(texts):
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokenize(texts), show_progress=False)
        retriever.save(str(out_dir), allow_pickle=False, show_progress=False)
    np.save(out_dir / IDS_FILE, ids, allow_pickle=False)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return {"dir": out_dir.name, "files": files, "k1": k1, "b": b, "ntotal": len(ids), "stopwords": STOPWORDS}


class BM25Index:
    """A loaded BM25 index answering ``search(query, k) -> [(vector_id, score)]``."""

    def __init__(self, directory: Path) -> None:
        import bm25s

        directory = Path(directory)
        self.vector_ids = np.load(directory / IDS_FILE, allow_pickle=False)
        self._retriever = None
        if len(self.vector_ids):
            self._retriever = bm25s.BM25.load(str(directory), allow_pickle=False, show_progress=False)

    def __len__(self) -> int:
        return len(self.vector_ids)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top-``k`` chunks by BM25 score; chunks sharing no term with the query are left out."""
        if self._retriever is None or k <= 0:
            return []
        tokens = tokenize([query])[0]
        token_ids = self._retriever.get_tokens_ids(tokens)
        if not token_ids:
            return []
        scores = np.asarray(self._retriever.get_scores_from_ids(token_ids), dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.vector_ids[i]), float(scores[i])) for i in top if scores[i] > 0]
