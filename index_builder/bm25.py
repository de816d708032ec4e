"""BM25 keyword index over chunk texts, stored with bm25s's own pickle-free format.

bm25s's ``save(allow_pickle=False)`` writes ``.npy`` arrays and JSON only. Rows of the BM25 matrix follow
chunk order; ``vector_ids.npy`` maps a row to the chunk's ``vector_id``.

Corpus scale: :func:`build_bm25_streaming` writes the same files from batches of texts without holding the
tokenised corpus in memory (bm25s's own ``index`` keeps every document's token list as Python objects: about
10 GB at 5M short chunks), and :class:`BM25Index` memory-maps large indexes and ranks only the documents that
share a term with the query (bm25s scores every document, then sorts them: about 100 ms at 10M documents).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterable, Sequence
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


#: From this many documents on, :class:`BM25Index` memory-maps the arrays and ranks only matching documents.
MMAP_MIN_DOCS = 1_000_000


def build_bm25_streaming(
    batches: Iterable[Sequence[str]],
    vector_ids: np.ndarray,
    out_dir: Path,
    *,
    k1: float = K1,
    b: float = B,
    scratch: Path | None = None,
) -> dict:
    """Indexes texts arriving in batches, writing the files of :func:`build_bm25` (bm25s's format, same scores).

    Two passes: the first tokenises each batch and keeps ``(document, term, count)`` triples as ``.npy``
    files under ``scratch``; the second, once document frequencies and the mean length are known, writes the
    score matrix column by column into memory-mapped ``.npy`` files. Memory holds one batch and the vocabulary.

    Args:
        batches: Texts in row order (their concatenation matches ``vector_ids``).
        vector_ids: ``(n,)`` vector id of each row.
        out_dir: Folder to write (created).
        k1: BM25 ``k1``.
        b: BM25 ``b``.
        scratch: Folder for the triples (default ``out_dir/.scratch``); removed at the end.

    Returns:
        The manifest entry of :func:`build_bm25`.
    """
    import bm25s

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(scratch) if scratch is not None else out_dir / ".scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(vector_ids, dtype=np.int64)
    vocab: dict[str, int] = {}
    parts: list[Path] = []
    df = np.zeros(0, dtype=np.int64)
    lengths: list[np.ndarray] = []
    first = 0
    try:
        for batch in batches:
            tokens = tokenize(batch)
            doc_len = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
            flat = [vocab.setdefault(w, len(vocab)) for doc in tokens for w in doc]
            del tokens
            term = np.asarray(flat, dtype=np.int64)
            doc = np.repeat(np.arange(first, first + len(doc_len), dtype=np.int64), doc_len)
            key, tf = np.unique(doc * (1 << 32) + term, return_counts=True)
            doc_u, term_u = (key >> 32).astype(np.int32), (key & 0xFFFFFFFF).astype(np.int32)
            if len(vocab) > len(df):
                df = np.concatenate([df, np.zeros(len(vocab) - len(df), dtype=np.int64)])
            df += np.bincount(term_u, minlength=len(df))
            path = scratch / f"part-{len(parts):06d}.npz"
            np.savez(path, doc=doc_u, term=term_u, tf=tf.astype(np.int32))
            parts.append(path)
            lengths.append(doc_len)
            first += len(doc_len)
        if first != len(ids):
            raise ValueError(f"{first} texts for {len(ids)} vector ids")
        doc_len = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        n_docs, n_vocab, nnz = first, len(vocab), int(df.sum())
        if n_docs:
            avg_len = float(doc_len.mean())
            idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
            indptr = np.zeros(n_vocab + 1, dtype=np.int64)
            np.cumsum(df, out=indptr[1:])
            data = np.lib.format.open_memmap(out_dir / "data.csc.index.npy", "w+", np.float32, (nnz,))
            indices = np.lib.format.open_memmap(out_dir / "indices.csc.index.npy", "w+", np.int32, (nnz,))
            cursor = indptr[:-1].copy()
            norm = (k1 * ((1 - b) + b * doc_len / avg_len)).astype(np.float32)
            for path in parts:
                with np.load(path, allow_pickle=False) as part:
                    d, t, tf = part["doc"], part["term"], part["tf"].astype(np.float32)
                order = np.argsort(t, kind="stable")  # docs stay ascending within each term
                d, t, tf = d[order], t[order], tf[order]
                counts = np.bincount(t, minlength=n_vocab)
                starts = np.cumsum(counts) - counts
                pos = cursor[t] + (np.arange(len(t)) - starts[t])
                data[pos] = idf[t] * (tf / (norm[d] + tf))
                indices[pos] = d
                cursor += counts
            data.flush()
            indices.flush()
            del data, indices
            np.save(out_dir / "indptr.csc.index.npy", indptr, allow_pickle=False)
            vocab[""] = n_vocab  # bm25s adds the empty token after the terms
            (out_dir / "vocab.index.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
            params = {
                "k1": k1,
                "b": b,
                "delta": 0.5,
                "method": "lucene",
                "idf_method": "lucene",
                "dtype": "float32",
                "int_dtype": "int32",
                "num_docs": n_docs,
                "version": bm25s.__version__,
                "backend": "numpy",
            }
            (out_dir / "params.index.json").write_text(json.dumps(params, indent=4), "utf-8")
        np.save(out_dir / IDS_FILE, ids, allow_pickle=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("BM25 over %d documents: %d terms, %d postings", first, len(vocab), int(df.sum()))
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    return {
        "dir": out_dir.name,
        "files": files,
        "k1": k1,
        "b": b,
        "ntotal": len(ids),
        "stopwords": STOPWORDS,
        "streamed": True,
    }


class BM25Index:
    """A loaded BM25 index answering ``search(query, k) -> [(vector_id, score)]``.

    Args:
        directory: The index folder.
        mmap: Memory-map the score arrays instead of reading them (default: from :data:`MMAP_MIN_DOCS`
            documents on). A memory-mapped index ranks only the documents that share a term with the query.
    """

    def __init__(self, directory: Path, *, mmap: bool | None = None) -> None:
        import bm25s

        directory = Path(directory)
        self.vector_ids = np.load(directory / IDS_FILE, allow_pickle=False, mmap_mode="r")
        self.mmap = len(self.vector_ids) >= MMAP_MIN_DOCS if mmap is None else bool(mmap)
        if not self.mmap:
            self.vector_ids = np.asarray(self.vector_ids)
        self._retriever = None
        self._scores: np.ndarray | None = None
        self._lock = threading.Lock()
        if len(self.vector_ids):
            self._retriever = bm25s.BM25.load(
                str(directory), allow_pickle=False, show_progress=False, mmap=self.mmap
            )

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
        if self.mmap:
            return self._search_postings(token_ids, k)
        scores = np.asarray(self._retriever.get_scores_from_ids(token_ids), dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.vector_ids[i]), float(scores[i])) for i in top if scores[i] > 0]

    def _search_postings(self, token_ids: list[int], k: int) -> list[tuple[int, float]]:
        """Top-``k`` among the documents in the query terms' posting lists (the same scores as bm25s)."""
        assert self._retriever is not None
        matrix = self._retriever.scores
        data, indices, indptr = matrix["data"], matrix["indices"], matrix["indptr"]
        terms = sorted(set(token_ids))
        with self._lock:
            if self._scores is None:
                self._scores = np.zeros(int(matrix["num_docs"]), dtype=np.float32)
            scores = self._scores
            touched = []
            for t in terms:
                start, end = int(indptr[t]), int(indptr[t + 1])
                docs = np.asarray(indices[start:end])
                scores[docs] += np.asarray(data[start:end])  # docs are unique within a term
                touched.append(docs)
            docs = np.unique(np.concatenate(touched)) if len(touched) > 1 else touched[0]
            values = scores[docs].copy()
            scores[docs] = 0.0
        k = min(k, len(docs))
        if k == 0:
            return []
        top = np.argpartition(-values, k - 1)[:k]
        top = top[np.lexsort((docs[top], -values[top]))]
        return [(int(self.vector_ids[docs[i]]), float(values[i])) for i in top if values[i] > 0]
