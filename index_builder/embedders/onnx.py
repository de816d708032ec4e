"""The ``onnx`` text backend: a sentence-transformers model run by ONNX Runtime as int8 (see docs/encoders.md).

Tokenisation is the model's own Hugging Face tokenizer with the sentence-transformers settings
(``sentence_bert_config.json``: ``max_seq_length``, ``do_lower_case``); pooling and normalisation follow the
model's ``modules.json`` (Transformer, Pooling, optional Normalize), so the vectors match the torch backend's
up to int8 rounding. Inputs are sorted by length before batching, as sentence-transformers does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index_builder.embedders.onnx_export import OnnxExport, ensure_export
from index_builder.embedders.sentence import model_folder
from zebra.errors import ModelError

log = logging.getLogger(__name__)

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


class UnsupportedModelError(ModelError):
    """The model's sentence-transformers modules cannot be reproduced on ONNX Runtime."""


@dataclass(frozen=True)
class StModules:
    """What the ONNX backend needs from a sentence-transformers folder.

    Attributes:
        pooling: ``mean``, ``cls``, ``max`` or ``mean_sqrt_len``.
        max_seq_length: Truncation length in tokens (special tokens included).
        do_lower_case: Lower-case texts before tokenising.
        normalize: The model ends with a Normalize module (vectors are normalised anyway).
    """

    pooling: str
    max_seq_length: int
    do_lower_case: bool
    normalize: bool


def read_modules(model_dir: Path) -> StModules:
    """Reads ``modules.json`` and the module configs; a plain Hugging Face folder means mean pooling.

    Raises:
        UnsupportedModelError: Modules other than Transformer, Pooling and Normalize (e.g. Dense), or a
            pooling mode this backend does not implement.
    """
    modules_file = model_dir / "modules.json"
    st_config: dict[str, Any] = {}
    if (model_dir / "sentence_bert_config.json").is_file():
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    hf_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    max_len = int(st_config.get("max_seq_length") or hf_config.get("max_position_embeddings") or 512)
    lower = bool(st_config.get("do_lower_case", False))
    if not modules_file.is_file():
        return StModules("mean", max_len, lower, True)
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = [m.get("type") for m in modules]
    unknown = [t for t in types if t not in (_TRANSFORMER, _POOLING, _NORMALIZE)]
    if unknown or not types or types[0] != _TRANSFORMER or _POOLING not in types:
        raise UnsupportedModelError(
            f"The ONNX backend reproduces Transformer + Pooling (+ Normalize) models; {model_dir} has "
            f"{', '.join(str(t) for t in types)}.",
            hint="Use the torch backend for this model.",
        )
    if modules[0].get("path"):  # the transformer lives in a sub-folder
        sub = model_dir / modules[0]["path"] / "sentence_bert_config.json"
        if sub.is_file():
            st_config = json.loads(sub.read_text(encoding="utf-8"))
            max_len = int(st_config.get("max_seq_length") or max_len)
            lower = bool(st_config.get("do_lower_case", lower))
    pool_dir = model_dir / next(m.get("path", "") for m in modules if m.get("type") == _POOLING)
    pool = json.loads((pool_dir / "config.json").read_text(encoding="utf-8"))
    modes = [
        mode
        for key, mode in (
            ("pooling_mode_mean_tokens", "mean"),
            ("pooling_mode_cls_token", "cls"),
            ("pooling_mode_max_tokens", "max"),
            ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
        )
        if pool.get(key)
    ]
    others = [k for k in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken") if pool.get(k)]
    if len(modes) != 1 or others:
        raise UnsupportedModelError(
            f"Pooling {modes + others} of {model_dir} is not supported by the ONNX backend (one of mean, "
            "cls, max, mean_sqrt_len).",
            hint="Use the torch backend for this model.",
        )
    return StModules(modes[0], max_len, lower, _NORMALIZE in types)


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors from token vectors ``(b, t, d)`` and the attention mask ``(b, t)``, L2-normalised."""
    m = mask[..., None].astype(np.float32)
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = np.where(m > 0, hidden, -1e9).max(axis=1)
    else:
        summed = (hidden * m).sum(axis=1)
        counts = np.clip(m.sum(axis=1), 1e-9, None)
        out = summed / (np.sqrt(counts) if mode == "mean_sqrt_len" else counts)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.ascontiguousarray(out / np.clip(norms, 1e-12, None), dtype=np.float32)


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def make_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations and ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or available_cores()
    opts.inter_op_num_threads = 1  # one sequential graph: a second pool only competes for the cores
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle threads sleep instead of spinning: on a shared 2-core machine (server + background build, other
    # jobs) spinning burns the cores others need; measured 5% less CPU under load, same wall time.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxTextEmbedder:
    """A sentence-transformers model run by ONNX Runtime as int8, exported locally and cached.

    Args:
        path: Sentence-transformers model folder.
        name: Name recorded in manifests (default: the folder name).
        cache_root: Folder of the export cache (default ``<data_dir>/models/onnx``).
        threads: Intra-op threads (default: the cores available to this process).

    Raises:
        NotFoundError: No folder at ``path``.
        UnsupportedModelError: Modules the backend cannot reproduce.
        ModelError: The export failed.
    """

    backend = "onnx"
    #: Largest batch run at once: callers' batches are split. Small runs keep the activations in cache: on
    #: MiniLM 16 took 10% less CPU time than 64 under load, and 8 gave 3-15% more chunks/s than 16 on an idle
    #: machine (docs/encoders.md).
    max_batch = 8

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        cache_root: Path | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = path = model_folder(path)
        self.name = name or path.name
        self.modules = read_modules(path)
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.max_tokens = int(self.modules.max_seq_length)
        self.threads = threads or available_cores()
        self.export: OnnxExport = ensure_export(
            path, self.name, cache_root or default_cache_root(), pooled=self._pooled_with
        )
        self._session = make_session(self.export.path, self.threads)
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.dim = int(self._session.get_outputs()[0].shape[-1] or self._probe_dim())

    def _probe_dim(self) -> int:
        return int(self.encode(["dimension probe"]).shape[1])

    @property
    def agreement(self) -> dict[str, float]:
        """Mean and minimum cosine to the torch model on the export's probe texts."""
        return self.export.agreement

    def describe(self) -> dict[str, Any]:
        """The backend part of the manifest's ``text_embedder`` block."""
        return {
            "backend": self.backend,
            "onnx": {
                "sha256": self.export.sha256,
                "recipe": self.export.info.get("recipe"),
                "agreement": self.agreement,
            },
        }

    def _features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        prepared = [str(t).strip() for t in texts]
        if self.modules.do_lower_case:
            prepared = [t.lower() for t in prepared]
        enc = self._tokenizer(
            prepared,
            padding=True,
            truncation="longest_first",
            max_length=self.max_tokens,
            return_tensors="np",
            verbose=False,
        )
        return {
            k: np.asarray(enc[k], dtype=np.int64) for k in enc if k in self._inputs or k == "attention_mask"
        }

    def _run(self, session: Any, texts: Sequence[str]) -> np.ndarray:
        feats = self._features(texts)
        feed = {n: feats[n] for n in self._inputs}
        hidden = session.run(None, feed)[0]
        return pool(hidden, feats["attention_mask"], self.modules.pooling)

    def _pooled_with(self, onnx_file: Path, texts: list[str]) -> np.ndarray:
        # Used once at export, before this instance has its own session.
        session = make_session(onnx_file, self.threads)
        saved, self._inputs = getattr(self, "_inputs", None), [i.name for i in session.get_inputs()]
        try:
            return np.concatenate([self._run(session, texts[i : i + 8]) for i in range(0, len(texts), 8)])
        finally:
            if saved is not None:
                self._inputs = saved

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """``(n, dim)`` float32, L2-normalised; inputs longer than ``max_tokens`` are truncated."""
        if len(texts) == 0:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        # Longest first, like sentence-transformers: batches of similar length carry little padding.
        order = np.argsort([-len(str(t)) for t in texts], kind="stable")
        out: np.ndarray | None = None
        batch_size = max(1, min(batch_size, self.max_batch))
        steps = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="Batches", unit="batch")
        for start in steps:
            idx = order[start : start + batch_size]
            vecs = self._run(self._session, [texts[i] for i in idx])
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        assert out is not None
        return out

    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer (the one the torch backend uses)."""
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` without ``[CLS]``/``[SEP]``."""
        return len(self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def default_cache_root() -> Path:
    """``<data_dir>/models/onnx``."""
    from zebra.config import get_settings

    return get_settings().models_dir / "onnx"
