"""Fixtures of the evaluation-harness tests: small synthetic NOVA sets and a tiny retrieval bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-case synthetic NOVA-layout set (64 px images, gold boxes, captions, histories)."""
    from zebra_datasets import generate_synthetic

    root = tmp_path_factory.mktemp("synth") / "nova"
    generate_synthetic(root, n_cases=20, seed=0, size=64)
    return root


@pytest.fixture(scope="session")
def synth_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the captions and histories of *another* synthetic set (seed 1), labelled with their
    diagnoses, indexed with the hashing test embedder (no model weights)."""
    from index_builder.build import build_bundle
    from zebra_datasets import generate_synthetic, read_nova

    root = tmp_path_factory.mktemp("bundle")
    generate_synthetic(root / "train", n_cases=21, seed=1, size=64)
    docs = []
    for case_id, rows in read_nova(root / "train").by_case().items():
        text = " ".join(dict.fromkeys(r.caption_text for r in rows if r.caption_text))
        docs.append(
            {
                "id": case_id,
                "kind": "case_report",
                "title": f"Case {case_id}",
                "text": f"{rows[0].clinical_history} {text}",
                "diagnosis": rows[0].final_diagnosis,
            }
        )
    src = root / "docs.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    build_bundle(root / "bundle", [f"jsonl:{src}"], text_embedder="hash:256")
    return root / "bundle"
