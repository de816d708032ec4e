"""``zebra data convert`` through the console entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zebra_cli import main
from zebra_datasets.nova import read_nova


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_convert_medpix_prints_json_summary(
    zebra_env: Path, tiny_medpix: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        "data",
        "convert",
        "medpix",
        str(tiny_medpix),
        str(tmp_path / "nova"),
        "--split",
        "train",
        "--images",
        "link",
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["rows"] == 3 and summary["cases"] == 2 and summary["split"] == "train"
    assert summary["skipped"] == {"no PNG under images/ (Thorax)": 1}
    assert len(read_nova(tmp_path / "nova")) == 3


def test_convert_synthetic_and_yolo(
    zebra_env: Path, tiny_yolo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        "data",
        "convert",
        "synthetic",
        "-",
        str(tmp_path / "syn"),
        "--cases",
        "3",
        "--seed",
        "7",
        "--size",
        "96",
    )
    assert code == 0
    summary = json.loads(out)
    assert (
        summary["rows"] == 5 and summary["cases"] == 3 and summary["changes"] == {"stable": 1, "worsening": 1}
    )
    assert read_nova(tmp_path / "syn").is_synthetic
    code, out, _ = _run(
        capsys, "data", "convert", "yolo", str(tiny_yolo), str(tmp_path / "y"), "--limit", "2"
    )
    assert code == 0 and json.loads(out)["rows"] == 2


def test_unknown_kind_and_bad_options(
    zebra_env: Path, tiny_medpix: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "data", "convert", "medpx", str(tiny_medpix), str(tmp_path / "o"))
    assert code == 2
    assert "Did you mean 'medpix'" in err and "medpix, synthetic, yolo" in err
    code, _, err = _run(
        capsys, "data", "convert", "medpix", str(tiny_medpix), str(tmp_path / "o"), "--images", "move"
    )
    assert code == 2 and "--images" in err
    code, _, err = _run(capsys, "data", "convert", "yolo", str(tmp_path / "missing"), str(tmp_path / "o"))
    assert code == 2 and "does not exist" in err
