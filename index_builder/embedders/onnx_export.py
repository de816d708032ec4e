"""Local ONNX export of a sentence-transformers model, int8 quantisation, and the on-disk cache.

Nothing is downloaded: the model folder is exported with ``torch.onnx.export`` (TorchScript exporter), its
attention, GELU and layer norms fused by onnxruntime's transformer optimiser, then its MatMul and Attention
weights quantised to int8 per output channel (``onnxruntime.quantization.quantize_dynamic``). Word
embeddings and the feed-forward down projections stay float (they cost accuracy for little speed).
Per-tensor int8 drops MiniLM's mean cosine to the float model to about 0.92; per-channel with these
exclusions keeps it at about 0.994 (docs/encoders.md).

The cache folder ``<data_dir>/models/onnx/<name>-<key>/`` holds ``model.int8.onnx`` and ``cache.json``
(source key, SHA-256 of every file, the recipe, and the agreement with the torch model measured on
:data:`PROBE_TEXTS` at export). It is written in a temporary folder and renamed into place (atomic); on load
every file's SHA-256 is checked, and a corrupted cache is exported again with a logged reason.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zebra.errors import ModelError

log = logging.getLogger(__name__)

#: Bump when the export or quantisation recipe changes: older caches are then exported anew.
RECIPE_VERSION = 1
RECIPE: dict[str, Any] = {
    "version": RECIPE_VERSION,
    "exporter": "torchscript",
    "opset": 17,
    "attention": "eager",
    "fusion": "onnxruntime.transformers.optimizer",
    "quantization": "dynamic int8, per-channel weights, MatMul + Attention; embeddings and GELU-fed MatMuls float",
}
MODEL_FILE = "model.int8.onnx"
CACHE_FILE = "cache.json"
#: An export whose vectors agree less than this with the torch model is not used (torch serves instead).
MIN_MEAN_COSINE = 0.99
MIN_COSINE = 0.95
#: Model types onnxruntime's transformer optimiser fuses (others export unfused, still quantised).
_FUSABLE = {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "electra", "camembert"}

#: Medical sentences of varied length: the agreement of an export with its torch model is measured on them.
PROBE_TEXTS: tuple[str, ...] = (
    "ring-enhancing brain lesion with central necrosis",
    "Meningioma: extra-axial dural-based mass with a dural tail.",
    "fractured femur",
    "Periventricular ovoid white matter lesions perpendicular to the lateral ventricles, typical of "
    "multiple sclerosis; some enhance after gadolinium, indicating active demyelination.",
    "Chest radiograph shows a spiculated right upper lobe nodule with ipsilateral hilar adenopathy.",
    "Dilated, non-compressible appendix measuring 9 mm with periappendiceal fat stranding.",
    "Child with ataxia and morning vomiting: cystic cerebellar mass with an enhancing mural nodule, "
    "most consistent with pilocytic astrocytoma. Differential diagnosis includes hemangioblastoma in "
    "an adult and medulloblastoma when the lesion is solid and midline. Hydrocephalus is present.",
    "Crescentic extra-axial collection over the convexity crossing suture lines.",
    "Jefferson fracture of C1 with lateral mass displacement",
    "What is the likeliest diagnosis?",
    "Autosomal dominant disorder with café-au-lait spots, neurofibromas and Lisch nodules; optic pathway "
    "gliomas occur in about 15% of children, and plexiform neurofibromas may transform to malignant "
    "peripheral nerve sheath tumours.",
    "Hypoplasia of the corpus callosum, seizures, microcephaly, global developmental delay.",
    "T2 hyperintense, T1 hypointense lesion with restricted diffusion in the left MCA territory.",
    "Bilateral symmetric hyperintensity of the basal ganglia and thalami on FLAIR.",
    "Well-circumscribed fat-containing renal mass: angiomyolipoma.",
    "Osteolytic lesion with a narrow zone of transition and no periosteal reaction in the epiphysis of a "
    "young adult; giant cell tumour is the leading consideration, chondroblastoma less likely.",
)


@dataclass(frozen=True)
class OnnxExport:
    """A verified cached export.

    Attributes:
        path: The int8 ONNX model file.
        sha256: Its SHA-256.
        info: The cache record (``source_key``, ``recipe``, ``agreement``, ``files`` ...).
    """

    path: Path
    sha256: str
    info: dict[str, Any]

    @property
    def agreement(self) -> dict[str, float]:
        """``mean_cosine``/``min_cosine`` to the torch model on :data:`PROBE_TEXTS` (measured at export)."""
        return dict(self.info.get("agreement") or {})

    @property
    def accepted(self) -> bool:
        """Whether the export agrees closely enough with torch to be used."""
        return agreement_ok(self.agreement)


def agreement_ok(agreement: dict[str, Any]) -> bool:
    """``True`` when ``agreement`` (``mean_cosine``, ``min_cosine``) meets :data:`MIN_MEAN_COSINE` and
    :data:`MIN_COSINE`."""
    try:
        return (
            float(agreement["mean_cosine"]) >= MIN_MEAN_COSINE
            and float(agreement["min_cosine"]) >= MIN_COSINE
        )
    except (KeyError, TypeError, ValueError):
        return False


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _weights_file(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise ModelError(
        f"No model.safetensors or pytorch_model.bin in {model_dir}; it cannot be exported to ONNX.",
        hint="Use the torch backend for this model (models.text_backend = 'torch').",
    )


@functools.lru_cache(maxsize=8)
def _source_key(model_dir: str, size: int, mtime_ns: int) -> str:
    # size and mtime are in the cache key of this function only, so a replaced file is hashed again.
    root = Path(model_dir)
    import onnxruntime

    h = hashlib.sha256()
    h.update(sha256_file(_weights_file(root)).encode())
    h.update((root / "config.json").read_bytes())
    h.update(json.dumps(RECIPE, sort_keys=True).encode())
    # Fusions and quantisation kernels change between onnxruntime minor versions.
    h.update(".".join(onnxruntime.__version__.split(".")[:2]).encode())
    return h.hexdigest()


def source_key(model_dir: Path) -> str:
    """SHA-256 over the model's weights and config, the recipe and the onnxruntime version."""
    st = _weights_file(model_dir).stat()
    return _source_key(str(model_dir.resolve()), st.st_size, st.st_mtime_ns)


def cache_folder(cache_root: Path, name: str, key: str) -> Path:
    """The cache folder of model ``name`` with source ``key``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_root / f"{safe}-{key[:16]}"


def load_cached(folder: Path, key: str) -> tuple[OnnxExport | None, str]:
    """The verified export in ``folder``, or ``(None, reason)`` when it is absent, stale or corrupted."""
    record = folder / CACHE_FILE
    if not record.is_file():
        return None, "no cached export"
    try:
        info = json.loads(record.read_text(encoding="utf-8"))
        files = dict(info["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{record} is unreadable ({exc})"
    if info.get("source_key") != key:
        return None, "the cached export was made from other weights or another recipe"
    if MODEL_FILE not in files:
        return None, f"{record} lists no {MODEL_FILE}"
    for fname, expected in files.items():
        path = folder / fname
        if not path.is_file():
            return None, f"{path} is missing"
        actual = sha256_file(path)
        if actual != expected:
            return None, f"{path} has SHA-256 {actual[:12]}..., expected {expected[:12]}..."
    return OnnxExport(folder / MODEL_FILE, files[MODEL_FILE], info), ""


def ensure_export(
    model_dir: Path,
    name: str,
    cache_root: Path,
    *,
    pooled: Callable[[Path, list[str]], np.ndarray],
) -> OnnxExport:
    """The cached, verified int8 export of ``model_dir``, exporting it first when needed.

    Args:
        model_dir: Sentence-transformers model folder.
        name: Model name (names the cache folder).
        cache_root: Where cache folders live (``<data_dir>/models/onnx``).
        pooled: ``pooled(onnx_file, texts)`` -> L2-normalised sentence vectors from an ONNX file, used to
            measure the agreement of a fresh export with the torch model.

    Raises:
        ModelError: The export or quantisation failed.
    """
    key = source_key(model_dir)
    folder = cache_folder(cache_root, name, key)
    found, reason = load_cached(folder, key)
    if found is not None:
        return found
    if folder.exists():
        log.warning("ONNX cache %s is not usable (%s); exporting the model again", folder, reason)
        _discard(folder)
    else:
        log.info("exporting %s to ONNX int8 in %s (%s; once per model, about a minute)", name, folder, reason)
    return _export(model_dir, folder, key, pooled)


def _discard(folder: Path) -> None:
    # Rename first so that a reader never sees a half-deleted folder under the real name.
    trash = folder.with_name(f".{folder.name}.trash-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def _discard_stale(folder: Path, model_dir: Path) -> None:
    """Removes exports of the same model folder made from older weights or recipes (their keys differ)."""
    prefix = folder.name.rsplit("-", 1)[0]
    for other in folder.parent.glob(f"{prefix}-*"):
        if other == folder or not other.is_dir():
            continue
        try:
            info = json.loads((other / CACHE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours to judge: an export in progress has no record yet
        if info.get("model_dir") == str(model_dir):
            log.info("removing the outdated ONNX export %s", other)
            _discard(other)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _export(
    model_dir: Path, folder: Path, key: str, pooled: Callable[[Path, list[str]], np.ndarray]
) -> OnnxExport:
    t0 = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        fp32 = tmp / "model.fp32.onnx"
        config = export_fp32(model_dir, fp32)
        fused = tmp / "model.fused.onnx"
        fuse(fp32, fused, config)
        quantize(fused, tmp / MODEL_FILE)
        fp32.unlink()
        fused.unlink()
        for extra in tmp.iterdir():  # external-data side files of the float models
            if extra.name != MODEL_FILE:
                extra.unlink()
        agreement = measure_agreement(model_dir, tmp / MODEL_FILE, pooled)
        digest = sha256_file(tmp / MODEL_FILE)
        info = {
            "source_key": key,
            "model_dir": str(model_dir),
            "recipe": RECIPE,
            "files": {MODEL_FILE: digest},
            "agreement": agreement,
            "accepted": agreement_ok(agreement),
            "export_seconds": round(time.perf_counter() - t0, 1),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tmp / CACHE_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        for path in (tmp / MODEL_FILE, tmp / CACHE_FILE, tmp):
            _fsync(path)
        try:
            tmp.rename(folder)
        except OSError:
            # Another process published the same export first: use theirs if it verifies.
            found, reason = load_cached(folder, key)
            if found is None:
                raise ModelError(
                    f"Could not publish the ONNX export in {folder}: {reason}.",
                    hint=f"Delete {folder} and try again.",
                ) from None
            return found
        _fsync(folder.parent)
        _discard_stale(folder, model_dir)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"Exporting {model_dir} to ONNX failed: {exc}.",
            hint="Use the torch backend (models.text_backend = 'torch') and report the error.",
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "exported %s to ONNX int8 in %.0f s: mean cosine %.4f (min %.4f) to torch on %d probe texts",
        model_dir.name,
        info["export_seconds"],
        agreement["mean_cosine"],
        agreement["min_cosine"],
        agreement["n"],
    )
    return OnnxExport(folder / MODEL_FILE, digest, info)


def export_fp32(model_dir: Path, out: Path) -> dict[str, Any]:
    """Exports the model's transformer (inputs -> ``last_hidden_state``) to ``out``; returns its HF config.

    Eager attention is exported (not SDPA) so that onnxruntime can fuse it into its Attention operator.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager")
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    sample = tok(["a short text", "a slightly longer text for the export"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, args, strict=True))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            _Hidden(model),
            tuple(sample[n] for n in names),
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=RECIPE["opset"],
            do_constant_folding=True,
            dynamo=False,
        )
    return model.config.to_dict()


def fuse(src: Path, out: Path, config: dict[str, Any]) -> None:
    """Fuses attention, GELU and layer norms with onnxruntime's transformer optimiser (copies when the
    model type is not one it knows)."""
    model_type = str(config.get("model_type", ""))
    if model_type not in _FUSABLE:
        log.info("no onnxruntime fusions for model type %r; quantising the unfused graph", model_type)
        shutil.copyfile(src, out)
        return
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(
        str(src),
        model_type="bert",  # the optimiser's BERT fusions cover the whole encoder-only family
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
    )
    opt.save_model_to_file(str(out))


def gelu_fed_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes fed by a GELU: the feed-forward down projections.

    Their inputs have long-tailed activations that per-tensor uint8 activation quantisation rounds
    badly; keeping them float lifts MiniLM's mean cosine to torch from about 0.990 to 0.994.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    gelu_out = {o for n in graph.node if "Gelu" in n.op_type for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and any(i in gelu_out for i in n.input)]


def quantize(src: Path, out: Path) -> None:
    """Dynamic int8 quantisation, per-channel weights, MatMul and Attention but the GELU-fed MatMuls."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the quantiser logs each tensor (and advice) on the root logger
    try:
        quantize_dynamic(
            str(src),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=gelu_fed_matmuls(src),
            # Fused operators live in the com.microsoft domain, where shape inference gives no types.
            extra_options={"DefaultTensorType": 1},
        )
    finally:
        root.setLevel(level)


def measure_agreement(
    model_dir: Path, onnx_file: Path, pooled: Callable[[Path, list[str]], np.ndarray]
) -> dict[str, float]:
    """Cosine of the export's vectors to the torch sentence-transformers vectors on :data:`PROBE_TEXTS`."""
    from index_builder.embedders.sentence import cached_sentence_transformer

    texts = list(PROBE_TEXTS)
    ref = cached_sentence_transformer(str(model_dir), None, "cpu").encode(texts, batch_size=8)
    got = pooled(onnx_file, texts)
    cos = np.sum(ref * got, axis=1)
    return {
        "mean_cosine": round(float(cos.mean()), 5),
        "min_cosine": round(float(cos.min()), 5),
        "n": len(texts),
    }
