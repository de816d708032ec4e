"""The ``torch`` backend of the text embedders: a sentence-transformers model from a local folder.

On its own so that the ONNX backend (:mod:`index_builder.embedders.onnx`) and its export can use the folder
check and the reference model without importing the backend chooser (:mod:`index_builder.embedders.text`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zebra.errors import ModelError, NotFoundError


def model_folder(path: str | Path) -> Path:
    """``path`` as an existing sentence-transformers folder.

    Raises:
        NotFoundError: When the folder does not exist.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise NotFoundError(
            f"Text model folder {path} does not exist.",
            hint="Pass an existing sentence-transformers folder, e.g. --text-embedder st:/path/to/model.",
        )
    return path


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from the network.

    Args:
        path: Model folder (with ``modules.json`` or a plain Hugging Face model).
        name: Name recorded in manifests (default: the folder name).
        device: Torch device.
    """

    backend = "torch"

    def __init__(self, path: str | Path, *, name: str | None = None, device: str = "cpu") -> None:
        self.path = path = model_folder(path)
        self.name = name or path.name
        self.device = device
        self._model: Any = None
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.max_tokens = int(model.max_seq_length or model.tokenizer.model_max_length)

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            try:
                self._model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
            except Exception as exc:
                raise ModelError(
                    f"Could not load the sentence-transformers model at {self.path}: {exc}.",
                    hint="Check that the folder holds a complete model (config, weights, tokenizer).",
                ) from exc
            self._model.eval()
        return self._model

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised; inputs longer than ``max_tokens`` are truncated."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer."""
        return self._load().tokenizer

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` without ``[CLS]``/``[SEP]``."""
        return len(self.tokenizer()(text, add_special_tokens=False, verbose=False)["input_ids"])


@functools.lru_cache(maxsize=8)
def cached_sentence_transformer(path: str, name: str | None, device: str) -> SentenceTransformerEmbedder:
    """One loaded model per (folder, name, device) in this process."""
    return SentenceTransformerEmbedder(path, name=name, device=device)
