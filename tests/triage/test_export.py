"""CSV and HTML exports: order, columns, escaping, inline images, errors."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from triage.export import CSV_COLUMNS, csv_text, html_text, write_exports
from triage.types import Analysis, WorkItem
from triage.worker import build_result


def _done(key: str, accession: str, anomaly: float, change: str | None = None) -> dict:
    rng = np.random.default_rng(len(key))
    analysis = Analysis(
        differential=[
            {"diagnosis": "Ependymoma", "probability": 0.6},
            {"diagnosis": "<b>Meningioma</b>", "probability": 0.2},
        ],
        anomaly_score=anomaly,
        nearest_similarity=0.8,
        change_label=change,
        change_confidence=0.9 if change else None,
        change_statement=f"Lesion {change}." if change else None,
        image=(rng.random((40, 40)) * 255).astype(np.uint8),
        heatmap=rng.random((40, 40)).astype(np.float32),
        analyser="test",
    )
    result = build_result(WorkItem(item_key=key, accession=accession, study_path="/x"), analysis)
    return {
        "item_key": key,
        "accession": accession,
        "status": "done",
        "priority": result["priority"]["score"],
        "attempts": 1,
        "result": result,
        "error": None,
    }


def _items() -> list[dict]:
    return [
        _done("k-low", "ACC1", 0.1),
        _done("k-high", '=HYPERLINK("x")', 0.95, "worsening"),
        _done("k-mid", "ACC3", 0.5, "stable"),
        {
            "item_key": "k-err",
            "accession": "ACC4",
            "status": "error",
            "priority": None,
            "attempts": 3,
            "result": None,
            "error": "CorruptFileError: <truncated> file",
        },
    ]


def test_csv_sorted_by_priority_with_errors_last_and_formulas_neutralised() -> None:
    rows = list(csv.DictReader(io.StringIO(csv_text(_items()))))
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert [r["item_key"] for r in rows] == ["k-high", "k-mid", "k-low", "k-err"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", ""]
    assert float(rows[0]["priority"]) > float(rows[1]["priority"]) > float(rows[2]["priority"])
    assert rows[0]["accession"].startswith("'=")  # would be a formula in a spreadsheet otherwise
    assert rows[0]["change"] == "worsening" and rows[0]["change_statement"] == "Lesion worsening."
    assert rows[0]["top_diagnosis"] == "Ependymoma" and rows[0]["top_probability"] == "0.600"
    assert "anomaly" in rows[0]["drivers"]
    assert rows[3]["error"].startswith("CorruptFileError") and rows[3]["status"] == "error"
    assert rows[1]["error"] == ""


def test_html_is_self_contained_escaped_and_ordered(tmp_path: Path) -> None:
    items = _items()
    text = html_text(items, run_name="run <1>")
    assert "<b>Meningioma</b>" not in text and "&lt;b&gt;Meningioma&lt;/b&gt;" in text
    assert "run &lt;1&gt;" in text and "&lt;truncated&gt;" in text
    assert text.count("data:image/png;base64,") == 6  # thumbnail + overlay per triaged item
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert text.index("ACC4") < text.index("k-high") < text.index("k-mid") < text.index("k-low")
    assert "Research use only" in text
    paths = write_exports(items, tmp_path / "out", run_name="r")
    assert paths["csv"].read_text(encoding="utf-8") == csv_text(items)
    assert paths["html"].is_file()
