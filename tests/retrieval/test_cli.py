"""``zebra search``, ``zebra bench retrieval`` and ``zebra eval retrieval`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from zebra_cli import build_app, main

runner = CliRunner()


def _invoke(*args: str) -> dict:
    result = runner.invoke(build_app(), list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_search_json_output(tiny_bundle: Path) -> None:
    payload = _invoke(
        "search", str(tiny_bundle), "dural tail extra-axial mass", "--k", "2", "--json", "--diagnoses"
    )
    assert payload["mode"] == "hybrid" and payload["image_hits"] is None
    hits = payload["hits"]
    assert [h["doc_id"] for h in hits] == ["jsonl:c1", "jsonl:d1"]
    cit = hits[0]["citation"]
    assert cit["quote"] == "MRI shows a dural based extra-axial mass with a dural tail."
    assert cit["char_start"] == 36 and cit["char_end"] == 36 + len(cit["quote"])
    assert set(hits[0]["scores"]) >= {"dense", "bm25", "fused", "rank"}
    assert payload["diagnoses"][0]["label"] == "Meningioma"


def test_search_filters_and_modes(tiny_bundle: Path) -> None:
    payload = _invoke("search", str(tiny_bundle), "mass", "--modality", "CT", "--mode", "dense", "--json")
    assert [h["doc_id"] for h in payload["hits"]] == ["jsonl:c3"]
    assert payload["filters"] == {"modality": ["CT"]}
    payload = _invoke("search", str(tiny_bundle), "mass", "--kind", "disease_discussion", "--json")
    assert {h["kind"] for h in payload["hits"]} == {"disease_discussion"}


def test_search_table_output(tiny_bundle: Path) -> None:
    result = runner.invoke(
        build_app(), ["search", str(tiny_bundle), "appendix", "--k", "1"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "Appendicitis" in result.stdout and "Text hits" in result.stdout


def test_search_image_json(image_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "q.png"
    Image.new("RGB", (8, 8), (0, 250, 0)).save(path)
    payload = _invoke("search", str(image_bundle), "--image", str(path), "--k", "1", "--json")
    assert payload["hits"] is None
    assert payload["image_hits"][0]["image_id"] == "medpix-images:MPX2_a"
    payload = _invoke(
        "search", str(image_bundle), "--image", str(path), "--cross-modal", "--k", "1", "--json"
    )
    assert payload["hits"][0]["doc_id"] == "medpix:case/MPX2"


def test_search_errors_are_messages_with_exit_codes(
    tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search", str(tiny_bundle)])
    assert exc.value.code == 2
    assert "Nothing to search for" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["search", str(tiny_bundle), "x", "--mode", "sparse"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["search", str(tiny_bundle.parent / "missing"), "x"])
    assert exc.value.code == 2
    assert "No index bundle" in capsys.readouterr().err


def test_bench_retrieval_prints_latencies(tiny_bundle: Path) -> None:
    payload = _invoke("bench", "retrieval", "--bundle", str(tiny_bundle), "--queries", "5")
    assert payload["n_queries"] == 5
    for mode in ("dense", "bm25", "hybrid"):
        stats = payload["modes"][mode]
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["max_ms"]


def test_eval_retrieval_on_a_synthetic_medpix(image_bundle: Path, tmp_path: Path) -> None:
    # dev cases whose history + findings echo the indexed train cases; the diagnosis never reaches the query
    dev = [
        ("MPX7", "Headache.", "Enhancing dural mass, red.", "Meningiomas"),
        ("MPX8", "Abdominal pain.", "Dilated appendix.", "Acute appendicitis"),
    ]
    records = [
        {"U_id": uid, "Case": {"History": h, "Findings": f, "Case Diagnosis": dx}, "Topic": {"Title": dx}}
        for uid, h, f, dx in dev
    ]
    (tmp_path / "Case_topic.json").write_text(json.dumps(records))
    (tmp_path / "splits.json").write_text(json.dumps({"dev": ["MPX7", "MPX8"], "train": []}))
    details = tmp_path / "details.jsonl"
    payload = _invoke(
        "eval",
        "retrieval",
        "--bundle",
        str(image_bundle),
        "--medpix",
        str(tmp_path),
        "--split",
        "dev",
        "--k",
        "2",
        "--hits",
        "4",
        "--details",
        str(details),
        "--json",
    )
    assert payload["n_cases"] == 2 and payload["k"] == 2
    for mode in ("dense", "bm25", "hybrid"):
        assert payload["modes"][mode]["top2"] == 1.0, mode
    assert payload["modes"]["bm25"]["top1"] == 1.0
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert [r["case_id"] for r in rows] == ["MPX7", "MPX8"]
    assert rows[0]["modes"]["bm25"]["candidates"][0]["label"] == "Meningioma"
