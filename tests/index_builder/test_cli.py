"""``zebra index`` and ``zebra bench`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zebra_cli import main

from .conftest import HASH


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_build_info_add_delete(tmp_path: Path, corpus: Path, zebra_env: Path, capsys) -> None:
    out = tmp_path / "bundle"
    code, stdout, _ = _run(
        capsys,
        "index",
        "build",
        str(out),
        "--source",
        f"jsonl:{corpus}",
        "--text-embedder",
        HASH,
        "--no-store",
        "--no-progress",
        "--chunk-tokens",
        "100",
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["counts"]["documents"] == 4 and summary["text_index"]["factory"] == "Flat"
    code, stdout, _ = _run(capsys, "index", "info", str(out), "--verify", "--ids")
    info = json.loads(stdout)
    assert code == 0 and info["verified"] == "sha256" and len(info["doc_ids"]) == 4
    assert info["chunking"]["max_tokens"] == 100
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"id": "q", "text": "Extra text."}\n')
    code, stdout, _ = _run(
        capsys, "index", "add", str(out), "-s", f"jsonl:{extra}?name=x", "--no-store", "--no-progress"
    )
    assert code == 0 and json.loads(stdout)["counts"]["documents"] == 5
    code, stdout, _ = _run(capsys, "index", "delete", str(out), "--doc-id", "x:q", "--no-store")
    assert code == 0 and json.loads(stdout)["counts"]["documents"] == 4


def test_errors_become_messages(tmp_path: Path, corpus: Path, zebra_env: Path, capsys) -> None:
    code, _, err = _run(capsys, "index", "info", str(tmp_path / "none"))
    assert code == 2 and "No index bundle" in err and "hint:" in err
    code, _, err = _run(capsys, "index", "build", str(tmp_path / "b"), "-s", "jsnl:x", "--no-store")
    assert code == 2 and "Did you mean 'jsonl'" in err
    code, _, err = _run(
        capsys,
        "index",
        "build",
        str(tmp_path / "b"),
        "-s",
        f"jsonl:{corpus}",
        "--text-embedder",
        "mini",
        "--no-store",
    )
    assert code == 2 and "Unknown text embedder backend" in err
    code, _, err = _run(
        capsys,
        "index",
        "build",
        str(tmp_path / "b"),
        "-s",
        f"jsonl:{corpus}",
        "--gpu",
        "--text-embedder",
        HASH,
        "--no-store",
    )
    assert code == 2 and "gpu extra" in err
    # A damaged bundle: exit code 2 and the file named.
    _run(
        capsys,
        "index",
        "build",
        str(tmp_path / "b"),
        "-s",
        f"jsonl:{corpus}",
        "--text-embedder",
        HASH,
        "--no-store",
        "--no-progress",
    )
    (tmp_path / "b" / "documents.parquet").write_bytes(b"garbage")
    code, _, err = _run(capsys, "index", "info", str(tmp_path / "b"))
    assert code == 2 and "documents.parquet" in err and "zebra index build" in err


def test_sources_listing(capsys) -> None:
    code, stdout, _ = _run(capsys, "index", "sources")
    payload = json.loads(stdout)
    assert code == 0 and {"medpix", "hpo", "jsonl", "images"} <= set(payload["sources"])
    assert "builtin" in payload["text_embedders"] and "openclip" in payload["image_embedders"]


def test_bench_commands(tmp_path: Path, corpus: Path, zebra_env: Path, capsys) -> None:
    code, stdout, _ = _run(
        capsys,
        "bench",
        "ann",
        "--n",
        "3000",
        "--dim",
        "16",
        "--queries",
        "50",
        "--factory",
        "Flat",
        "--factory",
        "IVF16,Flat",
        "--nprobe",
        "4,16",
        "--clusters",
        "20",
    )
    report = json.loads(stdout)
    assert code == 0 and [r["factory"] for r in report["results"]] == ["Flat", "IVF16,Flat"]
    assert report["results"][0]["params"][0]["recall@10"] == 1.0
    assert report["recommendation"]["recall@10"] >= 0.95
    code, stdout, _ = _run(
        capsys, "bench", "ingest", "--n", "3", "--source", f"jsonl:{corpus}", "--text-embedder", HASH
    )
    ingest = json.loads(stdout)
    assert (
        code == 0 and ingest["documents"] == 3 and ingest["ratio"] > 0 and ingest["pipeline_texts_per_s"] > 0
    )
