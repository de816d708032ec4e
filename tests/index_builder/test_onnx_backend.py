"""The onnx text backend: export, cache, pooling, backend choice, manifests, cross-backend search, bench.

A tiny BERT sentence-transformers folder is written per session (random weights, real tokenizer files), so
the export runs in seconds; the real all-MiniLM-L6-v2 tests are ``slow``, the MedPix one ``shared_data``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from index_builder.embedders import create_text_embedder
from zebra.errors import ConfigError, ModelError

pytest.importorskip("onnxruntime")

WORDS = [
    "brain",
    "lesion",
    "ring",
    "enhancing",
    "necrosis",
    "mass",
    "dural",
    "tail",
    "meningioma",
    "fracture",
    "femur",
    "bone",
    "wrist",
    "appendix",
    "pain",
    "fever",
    "child",
    "adult",
    "white",
    "matter",
    "periventricular",
    "ovoid",
    "multiple",
    "sclerosis",
    "cyst",
    "nodule",
    "cerebellar",
    "tumour",
    "glioma",
    "abscess",
    "rim",
    "diffusion",
    "restricted",
    "hemorrhage",
    "subdural",
    "collection",
    "lung",
    "nodule",
    "spiculated",
]

TEXTS = [
    "ring enhancing brain lesion with necrosis",
    "meningioma with a dural tail",
    "fracture of the femur",
    "periventricular ovoid white matter lesions in multiple sclerosis",
    "child with a cerebellar cyst and a nodule",
    "abscess with a rim and restricted diffusion",
    "subdural collection after a fall",
    "spiculated lung nodule",
    "appendix pain and fever",
    "wrist bone fracture",
]


def _tiny_model(root: Path, pooling: str = "mean", extra_module: bool = False) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), "a", "the", "of", "with"]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz.,")
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(str(root))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    BertModel(config).eval().save_pretrained(str(root))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    if extra_module:
        modules.insert(
            2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
        )
    (root / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (root / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 256, "do_lower_case": False}), encoding="utf-8"
    )
    (root / "1_Pooling").mkdir(exist_ok=True)
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": pooling == "max",
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        ),
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("tiny-st") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_onnx(tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny model on the onnx backend, exported once per session into its own cache."""
    from index_builder.embedders.onnx import OnnxTextEmbedder

    return OnnxTextEmbedder(tiny, cache_root=tmp_path_factory.mktemp("onnx-cache"))


def _torch(path: Path):
    from index_builder.embedders.text import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(path)


def test_onnx_vectors_match_torch(tiny: Path, tiny_onnx) -> None:
    ref = _torch(tiny).encode(TEXTS, batch_size=4)
    got = tiny_onnx.encode(TEXTS, batch_size=4)  # several batches, sorted by length inside
    assert got.shape == ref.shape == (len(TEXTS), 32) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() > 0.98, cos
    # Order is the caller's, not the length order used for batching.
    one_by_one = np.stack([tiny_onnx.encode([t])[0] for t in TEXTS])
    assert np.allclose(one_by_one, got, atol=2e-2)
    assert tiny_onnx.encode([]).shape == (0, 32)
    assert tiny_onnx.backend == "onnx" and tiny_onnx.max_tokens == 256
    assert tiny_onnx.count_tokens("ring lesion") == 2
    assert tiny_onnx.export.info["agreement"]["n"] > 10


def test_session_uses_the_available_cores(tiny_onnx) -> None:
    import os

    from index_builder.embedders.onnx import available_cores

    assert tiny_onnx.threads == available_cores() == len(os.sched_getaffinity(0))


def test_cache_is_reused_verified_and_reexported_when_corrupted(
    tiny: Path, tiny_onnx, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from index_builder.embedders import onnx_export
    from index_builder.embedders.onnx import OnnxTextEmbedder
    from index_builder.embedders.onnx_export import CACHE_FILE, MODEL_FILE, sha256_file

    folder = tiny_onnx.export.path.parent
    record = json.loads((folder / CACHE_FILE).read_text())
    assert record["files"][MODEL_FILE] == sha256_file(folder / MODEL_FILE) == tiny_onnx.export.sha256
    assert not list(folder.parent.glob(".*tmp-*"))  # the temporary export folder is gone

    def no_export(*a, **k):
        raise AssertionError("exported again although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(onnx_export, "_export", no_export)
        again = OnnxTextEmbedder(tiny, cache_root=folder.parent)
    assert again.export.sha256 == tiny_onnx.export.sha256

    # An export of the same folder under an older key is removed once a new export is published.
    stale = folder.parent / f"{folder.name.rsplit('-', 1)[0]}-0123456789abcdef"
    stale.mkdir()
    (stale / CACHE_FILE).write_text(json.dumps({"model_dir": str(tiny), "files": {}}), encoding="utf-8")

    # Flip bytes in the middle of the model: the checksum catches it and the model is exported anew.
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="index_builder.embedders.onnx_export"):
        fresh = OnnxTextEmbedder(tiny, cache_root=folder.parent)
    assert "SHA-256" in caplog.text and "exporting the model again" in caplog.text
    assert not stale.exists()
    assert sha256_file(fresh.export.path) == fresh.export.sha256
    assert np.allclose(fresh.encode(TEXTS[:3]), tiny_onnx.encode(TEXTS[:3]), atol=1e-4)

    # An unreadable record is also a reason to export again, not a crash.
    (folder / CACHE_FILE).write_text("{broken", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="index_builder.embedders.onnx_export"):
        OnnxTextEmbedder(tiny, cache_root=folder.parent)
    assert "unreadable" in caplog.text


def test_read_modules_follows_the_model_config(tmp_path: Path) -> None:
    from index_builder.embedders.onnx import UnsupportedModelError, pool, read_modules

    cls_model = _tiny_model(tmp_path / "cls", pooling="cls")
    mods = read_modules(cls_model)
    assert (mods.pooling, mods.max_seq_length, mods.normalize) == ("cls", 256, True)
    with pytest.raises(UnsupportedModelError, match="Dense"):
        read_modules(_tiny_model(tmp_path / "dense", extra_module=True))
    (cls_model / "modules.json").unlink()
    assert read_modules(cls_model).pooling == "mean"  # a plain Hugging Face folder

    hidden = np.array([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert np.allclose(pool(hidden, mask, "mean"), [[2**-0.5, 2**-0.5]])  # padding ignored
    assert np.allclose(pool(hidden, mask, "cls"), [[1.0, 0.0]])
    assert np.allclose(pool(hidden, mask, "max"), [[2**-0.5, 2**-0.5]])


def test_backend_choice_and_fallback(
    tiny: Path, tiny_onnx, zebra_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from index_builder.embedders import text

    monkeypatch.setattr(text, "_onnx_embedder", lambda path, name: tiny_onnx)
    spec = f"st:{tiny}"
    assert create_text_embedder(spec).backend == "onnx"  # auto, onnxruntime installed
    assert create_text_embedder(spec, backend="torch").backend == "torch"
    monkeypatch.setenv("ZEBRA_MODELS__TEXT_BACKEND", "torch")
    from zebra.config import get_settings

    get_settings.cache_clear()
    assert create_text_embedder(spec).backend == "torch"
    monkeypatch.setenv("ZEBRA_MODELS__TEXT_BACKEND", "auto")
    get_settings.cache_clear()
    # Without onnxruntime: auto falls back to torch and says why; an explicit onnx refuses.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level(logging.WARNING, logger="index_builder.embedders.text"):
        assert create_text_embedder(spec).backend == "torch"
    assert "runs on torch, not onnx" in caplog.text and "onnxruntime is not installed" in caplog.text
    with pytest.raises(ModelError, match="onnx text backend cannot serve"):
        create_text_embedder(spec, backend="onnx")
    monkeypatch.setenv("ZEBRA_MODELS__TEXT_BACKEND", "tensorflow")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="text_backend"):
        create_text_embedder(spec)


def test_poor_agreement_means_torch(tiny: Path, tiny_onnx, zebra_env: Path, monkeypatch) -> None:
    from index_builder.embedders import text

    class Diverging:
        backend = "onnx"
        agreement = {"mean_cosine": 0.9, "min_cosine": 0.5}
        export = type("E", (), {"accepted": False})()

    monkeypatch.setattr(text, "_onnx_embedder", lambda path, name: Diverging())
    assert create_text_embedder(f"st:{tiny}").backend == "torch"
    with pytest.raises(ModelError, match="agrees too little"):
        create_text_embedder(f"st:{tiny}", backend="onnx")


def _corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"d{i}",
            "title": f"doc {i}",
            "text": " ".join(rng.choice(WORDS, size=int(rng.integers(4, 20)))),
        }
        for i in range(60)
    ]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bundle_records_backend_and_is_searchable_with_the_other(
    tiny: Path, tiny_onnx, tmp_path: Path, zebra_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from index_builder.bench import text_backend
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle
    from index_builder.embedders import text

    monkeypatch.setattr(text, "_onnx_embedder", lambda path, name: tiny_onnx)
    spec, corpus = f"st:{tiny}", _corpus(tmp_path)
    with text_backend("torch"):
        m = build_bundle(tmp_path / "t", [f"jsonl:{corpus}"], text_embedder=spec)
    assert m["text_embedder"]["backend"] == "torch" and "onnx" not in m["text_embedder"]
    with text_backend("onnx"):
        m = build_bundle(tmp_path / "o", [f"jsonl:{corpus}"], text_embedder=spec)
    block = m["text_embedder"]
    assert block["backend"] == "onnx" and block["onnx"]["sha256"] == tiny_onnx.export.sha256
    assert block["onnx"]["agreement"]["mean_cosine"] > 0.98

    queries = [" ".join(np.random.default_rng(i).choice(WORDS, size=5)) for i in range(30)]
    assert Bundle.open(tmp_path / "t").text_embedder().backend == "torch"  # auto: the bundle's own backend
    assert Bundle.open(tmp_path / "o").text_embedder().backend == "onnx"
    with text_backend("onnx"):  # set explicitly: the torch bundle is queried with onnx (they agree)
        torch_built = Bundle.open(tmp_path / "t")
        assert torch_built.text_embedder().backend == "onnx"
    q_onnx = torch_built.text_embedder().encode(queries)
    q_torch = create_text_embedder(spec, backend="torch").encode(queries)
    top_o = [[v for v, _ in row] for row in torch_built.search_vectors(q_onnx, 10)]
    top_t = [[v for v, _ in row] for row in torch_built.search_vectors(q_torch, 10)]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_o, top_t, strict=True)])
    assert overlap >= 0.9, overlap
    with text_backend("torch"):
        assert Bundle.open(tmp_path / "o").text_embedder().backend == "torch"


def test_legacy_manifest_is_torch_and_divergence_is_refused(
    tiny: Path, tiny_onnx, tmp_path: Path, zebra_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from index_builder.bench import text_backend
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle
    from index_builder.embedders import text

    monkeypatch.setattr(text, "_onnx_embedder", lambda path, name: tiny_onnx)
    spec = f"st:{tiny}"
    with text_backend("torch"):
        build_bundle(tmp_path / "b", [f"jsonl:{_corpus(tmp_path)}"], text_embedder=spec)
    path = tmp_path / "b" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["text_embedder"]["backend"]  # a bundle from before backends were recorded
    path.write_text(json.dumps(manifest))
    assert Bundle.open(tmp_path / "b").text_embedder().backend == "torch"  # legacy = torch; auto keeps it
    with text_backend("onnx"):
        assert Bundle.open(tmp_path / "b").text_embedder().backend == "onnx"

    # A bundle whose recorded onnx agreement is poor is refused to torch queries, with the way out.
    with text_backend("onnx"):
        build_bundle(tmp_path / "o", [f"jsonl:{_corpus(tmp_path)}"], text_embedder=spec)
    path = tmp_path / "o" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["text_embedder"]["onnx"]["agreement"] = {"mean_cosine": 0.8, "min_cosine": 0.3}
    path.write_text(json.dumps(manifest))
    with text_backend("torch"), pytest.raises(ConfigError, match="built with the onnx text encoder") as err:
        Bundle.open(tmp_path / "o").text_embedder()
    assert "mean cosine 0.8" in str(err.value) and "text_backend" in (err.value.hint or "")
    assert Bundle.open(tmp_path / "o").text_embedder() is tiny_onnx  # same backend: no question asked


def test_compare_encoders_side_by_side(tiny: Path, tiny_onnx, zebra_env: Path, monkeypatch) -> None:
    from index_builder.bench import compare_encoders
    from index_builder.embedders import text

    monkeypatch.setattr(text, "_onnx_embedder", lambda path, name: tiny_onnx)
    texts = [" ".join(np.random.default_rng(i).choice(WORDS, size=12)) for i in range(40)]
    report = compare_encoders(texts, TEXTS, spec=f"st:{tiny}", batch_size=8, repeats=1)
    torch_r, onnx_r = report["backends"]["torch"], report["backends"]["onnx"]
    assert torch_r["backend"] == "torch" and onnx_r["backend"] == "onnx"
    for r in (torch_r, onnx_r):
        assert r["chunks_per_s"] > 0 and r["query_ms_p95"] >= r["query_ms_p50"] > 0
    assert report["speedup"] == pytest.approx(onnx_r["chunks_per_s"] / torch_r["chunks_per_s"], rel=0.01)
    agreement = report["agreement"]
    assert agreement["mean_cosine"] > 0.98 and agreement["top10_overlap"] >= 0.8
    assert agreement["top10_overlap_cross"] >= 0.8
    json.dumps(report)  # JSON-ready
    assert len(report["load_average"]["before"]) == 3


# --- real all-MiniLM-L6-v2 ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_pair(tmp_path_factory: pytest.TempPathFactory):
    """(torch, onnx) all-MiniLM-L6-v2, the onnx one exported into a module-scoped cache."""
    from index_builder.embedders.onnx import OnnxTextEmbedder
    from index_builder.embedders.text import BUILTIN_TEXT_MODEL, builtin_text_model_dir

    torch_emb = create_text_embedder("builtin", backend="torch")
    onnx_emb = OnnxTextEmbedder(
        builtin_text_model_dir(), name=BUILTIN_TEXT_MODEL, cache_root=tmp_path_factory.mktemp("minilm-onnx")
    )
    return torch_emb, onnx_emb


@pytest.mark.slow
def test_minilm_onnx_agrees_with_torch(minilm_pair) -> None:
    torch_emb, onnx_emb = minilm_pair
    assert onnx_emb.dim == 384 and onnx_emb.max_tokens == 256 and onnx_emb.export.accepted
    texts = [
        *TEXTS,
        "Glioblastoma is a malignant glial tumour with ring enhancement and central necrosis. " * 12,
    ]
    cos = np.sum(torch_emb.encode(texts) * onnx_emb.encode(texts), axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, cos
    assert onnx_emb.tokenizer()("lesion")["input_ids"] == torch_emb.tokenizer()("lesion")["input_ids"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_medpix_dev_top10_agree_across_backends(
    minilm_pair, medpix_root: Path, tmp_path: Path, zebra_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch-built bundle of real MedPix train cases, searched with real dev queries on both backends."""
    from index_builder.bench import MemorySource, text_backend
    from index_builder.build import build_bundle
    from index_builder.bundle import Bundle
    from index_builder.embedders import text
    from index_builder.pipeline import collect
    from index_builder.sources import create_source
    from retrieval.evaluate import load_medpix_cases

    torch_emb, onnx_emb = minilm_pair
    monkeypatch.setattr(text, "_onnx_embedder", lambda path, name: onnx_emb)
    docs = collect([create_source(f"medpix:{medpix_root}?split=train")]).documents[:150]
    with text_backend("torch"):
        build_bundle(tmp_path / "b", [MemorySource(docs, "medpix")], text_embedder="builtin")
    with text_backend("onnx"):  # set explicitly: the torch-built bundle is queried with onnx
        bundle = Bundle.open(tmp_path / "b")
        assert bundle.text_embedder() is onnx_emb
    cases = [c for c in load_medpix_cases(medpix_root, "dev") if (c.history or c.findings).strip()][:40]
    queries = [f"{c.history} {c.findings}".strip() for c in cases]
    tops = {
        name: [[v for v, _ in row] for row in bundle.search_vectors(emb.encode(queries), 10)]
        for name, emb in (("torch", torch_emb), ("onnx", onnx_emb))
    }
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(tops["torch"], tops["onnx"], strict=True)]
    top1 = np.mean([a[0] == b[0] for a, b in zip(tops["torch"], tops["onnx"], strict=True)])
    assert np.mean(overlap) >= 0.8 and top1 >= 0.85, (np.mean(overlap), top1)
