"""Reading side of an index bundle: :class:`Bundle` (see docs/index_builder.md for the layout).

A bundle is a folder written atomically by :mod:`index_builder.build`; ``Bundle.open`` checks every file
listed in ``manifest.json`` (size and SHA-256) before anything is loaded.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index_builder import layout
from index_builder.errors import REBUILD_HINT, BundleChangedError, BundleIntegrityError

if TYPE_CHECKING:
    import faiss
    import numpy as np
    import pandas as pd

    from index_builder.bm25 import BM25Index
    from index_builder.embedders.base import ImageEmbedder, TextEmbedder

log = logging.getLogger(__name__)


class Bundle:
    """An opened, verified index bundle.

    Attributes:
        path: The bundle folder.
        manifest: The parsed ``manifest.json``.

    Tables and indexes load lazily on first access and are then cached on the instance:
    ``chunks`` (indexed by ``vector_id``), ``documents``, ``images`` (indexed by ``vector_id``, or
    ``None``), ``text_index`` and ``image_index`` (FAISS, ids are ``vector_id``; ``None`` when absent).
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        # A rebuild swaps a new folder in at the same path; lazy loads must not mix two bundles.
        self._identity = _identity(self.path)
        self._cross_modal: dict[str, faiss.Index | None] = {}

    def _check_unchanged(self) -> None:
        if _identity(self.path) != self._identity:
            raise BundleChangedError(
                f"The bundle at {self.path} was rebuilt or updated after it was opened.",
                hint="Open it again (Bundle.open) to read the new version.",
            )

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> Bundle:
        """Opens the bundle at ``path``.

        Args:
            path: Bundle folder.
            verify: Check the SHA-256 of every file (sizes are always checked).

        Raises:
            BundleNotFoundError: No bundle at ``path`` (a :class:`zebra.errors.NotFoundError`).
            IndexIntegrityError: A file is missing, truncated or altered; the message names it.
        """
        root = Path(path).expanduser()
        manifest = layout.read_manifest(root)
        layout.verify_files(root, manifest, checksums=verify)
        return cls(root, manifest)

    # --- tables -----------------------------------------------------------------------------------
    def _read_parquet(self, name: str) -> pd.DataFrame:
        import pandas as pd

        self._check_unchanged()
        path = self.path / name
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise BundleIntegrityError(
                f"Bundle file {path} cannot be read: {exc}.", hint=REBUILD_HINT
            ) from exc

    @functools.cached_property
    def chunks(self) -> pd.DataFrame:
        """One row per text chunk, indexed by ``vector_id`` (see :data:`layout.CHUNK_COLUMNS`)."""
        return self._read_parquet(layout.CHUNKS).set_index("vector_id")

    @functools.cached_property
    def documents(self) -> pd.DataFrame:
        """One row per document (``doc_id``, ``source``, ``kind``, ``title``, ``diagnosis``, ``text``, ...)."""
        return self._read_parquet(layout.DOCUMENTS)

    @functools.cached_property
    def images(self) -> pd.DataFrame | None:
        """One row per indexed image, indexed by ``vector_id``; ``None`` when the bundle has no images."""
        if layout.IMAGES not in self.manifest["files"]:
            return None
        return self._read_parquet(layout.IMAGES).set_index("vector_id")

    # --- indexes ----------------------------------------------------------------------------------
    def _read_index(self, entry: dict[str, Any] | None, *, mmap: bool | None = None) -> faiss.Index | None:
        """Reads an index of the manifest; memory-mapped when the entry says ``mmap`` (on-disk indexes) unless
        ``mmap`` is ``False`` (a copy in memory, to change and write anew)."""
        if not entry:
            return None
        import faiss

        from index_builder.faiss_factory import mmap_flags, set_search_params

        self._check_unchanged()
        path = self.path / entry["file"]
        flags = mmap_flags() if (entry.get("mmap") if mmap is None else mmap) else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise BundleIntegrityError(
                f"Bundle file {path} is not a FAISS index: {exc}.", hint=REBUILD_HINT
            ) from exc
        set_search_params(
            index,
            ef_search=entry.get("ef_search"),
            nprobe=entry.get("nprobe"),
            k_factor=entry.get("k_factor"),
        )
        return index

    def index_copy(self, name: str) -> faiss.Index | None:
        """``"text"`` or ``"image"`` index read into memory even when it is memory-mapped for searching: the
        copy to change (add, delete) and write into a new bundle; a mapped index must never be written to."""
        return self._read_index(self.manifest.get(f"{name}_index"), mmap=False)

    @functools.cached_property
    def text_index(self) -> faiss.Index:
        """The FAISS text index (inner product, ids are chunk ``vector_id``s)."""
        index = self._read_index(self.manifest.get("text_index"))
        if index is None:
            raise BundleIntegrityError(f"Bundle {self.path} has no text index.", hint=REBUILD_HINT)
        return index

    @functools.cached_property
    def image_index(self) -> faiss.Index | None:
        """The FAISS image index (ids are image ``vector_id``s), or ``None``."""
        return self._read_index(self.manifest.get("image_index"))

    def cross_modal_index(self, part: str) -> faiss.Index | None:
        """A precomputed cross-modal index (:mod:`index_builder.cross_modal`): ``"chunks"`` (the chunk texts)
        or ``"captions"`` (the image captions) embedded by the image embedder's text tower; ``None`` when
        the bundle predates them or has no image index."""
        if part not in self._cross_modal:
            block = (self.manifest.get("cross_modal") or {}).get(part)
            self._cross_modal[part] = self._read_index(block) if block else None
        return self._cross_modal[part]

    def cross_modal_vectors(self, part: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(vector_ids, vectors)`` of :meth:`cross_modal_index`, sorted by id; ``None`` when absent."""
        import numpy as np

        from index_builder.faiss_factory import index_vectors

        index = self.cross_modal_index(part)
        if index is None:
            return None
        ids, vectors = index_vectors(index)
        order = np.argsort(ids, kind="stable")
        return ids[order], np.ascontiguousarray(vectors[order], dtype=np.float32)

    @property
    def cross_modal_embedder(self) -> dict[str, Any] | None:
        """The image embedder (``spec``, ``dim``, ``checkpoint_sha256``) the cross-modal indexes were made
        with, or ``None`` when the bundle has none."""
        block = self.manifest.get("cross_modal")
        return dict(block.get("embedder") or {}) if block else None

    @functools.cached_property
    def bm25(self) -> BM25Index:
        """The BM25 keyword index over chunk texts."""
        from index_builder.bm25 import BM25Index

        self._check_unchanged()
        entry = self.manifest.get("bm25") or {}
        return BM25Index(self.path / entry.get("dir", layout.BM25_DIR))

    def bm25_search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top-``k`` chunks for ``query`` by BM25: ``[(vector_id, score)]``, best first, scores > 0."""
        return self.bm25.search(query, k)

    # --- embedders --------------------------------------------------------------------------------
    def text_embedder(self) -> TextEmbedder:
        """The text embedder the bundle was built with (created from the manifest spec, cached)."""
        return self._text_embedder

    @functools.cached_property
    def _text_embedder(self) -> TextEmbedder:
        from index_builder.embedders import create_text_embedder

        info = self.manifest["text_embedder"]
        embedder = _cross_backend(create_text_embedder(info["spec"]), info, self.path)
        _check_dim(embedder.dim, info, self.path)
        return embedder

    def image_embedder(self) -> ImageEmbedder | None:
        """The image embedder the bundle was built with, or ``None`` when it has no image index."""
        return self._image_embedder

    @functools.cached_property
    def _image_embedder(self) -> ImageEmbedder | None:
        info = self.manifest.get("image_embedder")
        if not info or not self.manifest.get("image_index"):
            return None
        from index_builder.embedders import create_image_embedder

        embedder = create_image_embedder(info["spec"])
        _check_dim(embedder.dim, info, self.path)
        expected = info.get("checkpoint_sha256")
        actual = getattr(embedder, "checkpoint_sha256", None)
        if expected != actual:
            log.warning(
                "image embedder %s now has checkpoint %s but the bundle was built with %s; "
                "image search results will be poor until the bundle is rebuilt",
                info["spec"],
                actual,
                expected,
            )
        return embedder

    # --- conveniences -----------------------------------------------------------------------------
    def search_text(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """Dense search: ``[(vector_id, inner product)]`` for a text query, best first."""
        vec = self.text_embedder().encode([query])
        return self.search_vectors(vec, k)[0]

    def search_vectors(
        self, vectors: np.ndarray, k: int = 10, *, image: bool = False
    ) -> list[list[tuple[int, float]]]:
        """Dense search for a batch of L2-normalised query vectors in the text (or image) index."""
        import numpy as np

        index = self.image_index if image else self.text_index
        if index is None or index.ntotal == 0:
            return [[] for _ in range(len(vectors))]
        scores, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, index.ntotal))
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def document(self, doc_id: str) -> dict[str, Any]:
        """One document row as a dict (``meta`` decoded).

        Raises:
            KeyError: When ``doc_id`` is not in the bundle.
        """
        rows = self.documents[self.documents["doc_id"] == doc_id]
        if rows.empty:
            raise KeyError(doc_id)
        row = rows.iloc[0].to_dict()
        row["meta"] = json.loads(row.get("meta") or "{}")
        return row

    @property
    def counts(self) -> dict[str, Any]:
        """The manifest's ``counts`` block."""
        return self.manifest.get("counts", {})

    def __repr__(self) -> str:
        c = self.counts
        return f"Bundle({str(self.path)!r}, documents={c.get('documents')}, chunks={c.get('chunks')}, images={c.get('images')})"


def _identity(path: Path) -> tuple[int, int]:
    """(device, inode) of the bundle folder: changes when a build swaps a new folder in."""
    st = path.stat()
    return st.st_dev, st.st_ino


def _cross_backend(embedder: TextEmbedder, info: dict[str, Any], path: Path) -> TextEmbedder:
    """The embedder that queries a bundle: with ``auto``, the bundle's own backend whenever it is available
    (same encoder for index and queries); with a backend set explicitly, ``embedder`` when its vectors agree
    with the bundle's backend, else a :class:`~zebra.errors.ConfigError`.

    torch and onnx vectors are interchangeable when the onnx export agrees with torch (mean/min cosine on
    the export's probe texts, :func:`index_builder.embedders.onnx_export.agreement_ok`). Bundles written
    before the manifest recorded a backend were built with torch.
    """
    from index_builder.embedders.onnx_export import agreement_ok
    from index_builder.embedders.text import configured_backend

    built = str(info.get("backend") or "torch")
    now = str(getattr(embedder, "backend", built))
    if now == built or not {now, built} <= {"torch", "onnx"}:
        return embedder
    if configured_backend() == "auto":
        # Queries with the encoder that built the index: onnx queries on the torch-built default bundle moved
        # MedPix dev agent top-1 by -0.03 (docs/encoders.md), beyond the 0.02 the backends may differ by.
        from index_builder.embedders import create_text_embedder
        from zebra.errors import ZebraError

        try:
            own = create_text_embedder(info["spec"], backend=built)
        except ZebraError as exc:
            log.warning(
                "bundle %s was built with %s, which is not available here: %s", path, built, exc.message
            )
        else:
            log.info(
                "bundle %s was built with the %s text encoder; querying it with %s too", path, built, built
            )
            return own
    # The onnx side's agreement: the live export's, or the one recorded when the bundle was built.
    agreement = (
        getattr(embedder, "agreement", None) if now == "onnx" else (info.get("onnx") or {}).get("agreement")
    )
    if agreement and agreement_ok(agreement):
        log.info(
            "bundle %s was built with the %s text encoder; querying it with %s (mean cosine %.4f to torch)",
            path,
            built,
            now,
            float(agreement["mean_cosine"]),
        )
        return embedder
    why = (
        f"the onnx export's vectors diverge from torch (mean cosine {agreement.get('mean_cosine')}, "
        f"min {agreement.get('min_cosine')})"
        if agreement
        else "the bundle does not record how closely its onnx vectors agree with torch"
    )
    if configured_backend() == "auto":
        from index_builder.embedders import create_text_embedder

        log.warning("bundle %s was built with %s; querying it with %s too, since %s", path, built, built, why)
        return create_text_embedder(info["spec"], backend=built)
    from zebra.errors import ConfigError

    raise ConfigError(
        f"Bundle {path} was built with the {built} text encoder and cannot be searched with {now}: {why}.",
        hint=f"Set models.text_backend = '{built}' (ZEBRA_MODELS__TEXT_BACKEND={built}) or 'auto', or "
        "rebuild the bundle with this backend.",
    )


def _check_dim(dim: int, info: dict[str, Any], path: Path) -> None:
    if info.get("dim") is not None and int(info["dim"]) != int(dim):
        raise BundleIntegrityError(
            f"Bundle {path} was built with {info['spec']} of dimension {info['dim']}, but that spec now gives "
            f"dimension {dim}.",
            hint=REBUILD_HINT,
        )
