"""Fixtures for the index builder tests: tiny corpora, the hashing embedder, the real MiniLM (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HASH = "hash:256"

DOCS = [
    {
        "id": "gbm",
        "title": "Glioblastoma",
        "diagnosis": "Glioblastoma",
        "text": "Glioblastoma is a malignant glial tumour with ring enhancement and central necrosis.",
    },
    {
        "id": "men",
        "title": "Meningioma",
        "diagnosis": "Meningioma",
        "text": "Meningioma is an extra-axial dural based mass with a dural tail sign.",
    },
    {
        "id": "ms",
        "title": "Multiple sclerosis",
        "diagnosis": "Multiple sclerosis",
        "text": "Multiple sclerosis shows periventricular ovoid white matter lesions perpendicular to the ventricles.",
    },
    {
        "id": "abs",
        "title": "Brain abscess",
        "diagnosis": "Brain abscess",
        "text": "A brain abscess has a smooth enhancing rim and restricted diffusion in its core.",
    },
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_faiss_thread():
    """One OpenMP thread for FAISS: on a busy shared machine, spinning OpenMP teams make small k-means and
    HNSW builds tens of times slower; the tests' indexes are tiny anyway."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A four-document JSON Lines corpus."""
    return write_jsonl(tmp_path / "docs.jsonl", DOCS)


@pytest.fixture
def long_corpus(tmp_path: Path) -> Path:
    """Documents long enough to be split into several chunks."""
    rows = [
        {
            "id": f"long{i}",
            "title": f"Long topic {i}",
            "text": " ".join(
                f"Sentence {j} about topic {i} with findings number {j * i}." for j in range(60)
            ),
        }
        for i in range(6)
    ]
    return write_jsonl(tmp_path / "long.jsonl", rows)


@pytest.fixture
def built(tmp_path: Path, corpus: Path, zebra_env: Path) -> Path:
    """A bundle built from :func:`corpus` with the hashing embedder."""
    from index_builder.build import build_bundle

    out = tmp_path / "bundle"
    build_bundle(out, [f"jsonl:{corpus}"], text_embedder=HASH)
    return out


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 text embedder on torch, loaded once per session (test_onnx_backend.py
    covers the onnx backend)."""
    from index_builder.embedders import create_text_embedder

    return create_text_embedder("builtin", backend="torch")
