"""--protocol and --unit through the harness, the summary, the report, compare and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from eval.errors import EvalConfigError, EvalDataError
from eval.harness import run_eval
from eval.judges import OfflineJudge
from eval.metrics.localisation import mean_localisation
from eval.predictors import CasePrediction
from zebra_datasets import read_nova

FAST_JUDGE = OfflineJudge(synonyms=[])


class _ShiftedBoxes:
    """Each gold box shifted by 3 px, behind a confident false box: the protocols' interpolations differ."""

    name = "shifted"
    tasks = frozenset({"localisation", "diagnosis"})

    def __init__(self, gold: dict[str, list[list[float]]]) -> None:
        self.gold = gold

    def predict_case(self, case_id: str, records: list[Any], dataset: Any) -> CasePrediction:
        boxes = {}
        for r in records:
            boxes[r.filename] = [[0.0, 0.0, 4.0, 4.0, 0.99]] + [
                [x1 + 3, y1, x2 + 3, y2, 0.5] for x1, y1, x2, y2 in self.gold[r.filename]
            ]
        return CasePrediction(diagnoses=["nothing"], probabilities=[0.5], boxes=boxes)


def _gold(synth: Path) -> dict[str, list[list[float]]]:
    return {r.filename: [list(b.xyxy()) for b in r.gold_boxes] for r in read_nova(synth).records}


def test_summary_and_report_state_the_protocol_and_unit(synth: Path, tmp_path: Path) -> None:
    gold = _gold(synth)
    nova = run_eval(synth, tmp_path / "n", _ShiftedBoxes(gold), judge=FAST_JUDGE, n_resamples=50)
    assert (nova["protocol"], nova["unit"]) == ("nova", "case")
    assert "11-point" in nova["protocol_definition"]
    images = [
        ([[0.0, 0.0, 4.0, 4.0, 0.99]] + [[b[0] + 3, b[1], b[2] + 3, b[3], 0.5] for b in g], g)
        for g in gold.values()
    ]
    for key, value in mean_localisation(images, protocol="nova").items():
        assert nova[key] == pytest.approx(value, abs=1e-9), key
    report = (tmp_path / "n" / "report.html").read_text()
    assert "Localisation protocol: <b>nova</b>" in report and "Scoring unit: <b>case</b>" in report

    coco = run_eval(
        synth, tmp_path / "c", _ShiftedBoxes(gold), judge=FAST_JUDGE, n_resamples=50, protocol="coco"
    )
    assert coco["protocol"] == "coco"
    for key, value in mean_localisation(images, protocol="coco").items():
        assert coco[key] == pytest.approx(value, abs=1e-9), key
    assert coco["acc50"] == 0.0 and nova["acc50"] > 0.3  # top box (always the false one) vs any box
    assert "Localisation protocol: <b>coco</b>" in (tmp_path / "c" / "report.html").read_text()

    with pytest.raises(EvalConfigError, match="protocol"):
        run_eval(synth, tmp_path / "x", "oracle", judge=FAST_JUDGE, protocol="voc")
    with pytest.raises(EvalConfigError, match="unit"):
        run_eval(synth, tmp_path / "y", "oracle", judge=FAST_JUDGE, unit="study")


def test_oracle_is_perfect_under_both_protocols_and_units(synth: Path, tmp_path: Path) -> None:
    for protocol in ("nova", "coco"):
        for unit in ("case", "image"):
            out = tmp_path / f"{protocol}-{unit}"
            s = run_eval(synth, out, "oracle", judge=FAST_JUDGE, n_resamples=20, protocol=protocol, unit=unit)
            assert (s["protocol"], s["unit"]) == (protocol, unit)
            for key in ("map_0.3", "map_0.5", "map_0.5_0.95", "acc50", "top1", "bleu4", "rouge_l"):
                assert s[key] == pytest.approx(1.0), (protocol, unit, key)
    assert s["counts"]["n_diagnosis_images"] == 30  # 20 cases, 30 images, each with a diagnosis


def test_image_unit_judges_each_image_against_its_own_diagnosis() -> None:
    from eval.scoring import score_predictions

    def rec(name: str, truth: str) -> SimpleNamespace:
        return SimpleNamespace(filename=name, final_diagnosis=truth, meta={}, gold_boxes=[], caption_text="")

    gold = {
        "a": [rec("a1", "Glioma"), rec("a2", "Meningioma"), rec("a3", "")],  # no diagnosis on a3: not scored
        "b": [rec("b1", "Meningioma")],
    }
    preds = [
        {"case_id": "a", "diagnoses": ["Glioma"], "probabilities": [0.9]},
        {"case_id": "b", "diagnoses": ["Glioma"], "probabilities": [0.6]},
    ]
    same = lambda x, y: x == y  # noqa: E731
    case = score_predictions(preds, gold, same=same, tasks=["diagnosis"], n_resamples=20)
    image = score_predictions(preds, gold, same=same, tasks=["diagnosis"], n_resamples=20, unit="image")
    assert case.metrics["top1"] == pytest.approx(1 / 2)  # case a's truth is its first diagnosis, Glioma
    assert image.metrics["top1"] == pytest.approx(1 / 3)  # a1 right; a2 and b1 wrong
    assert image.unit == "image" and case.unit == "case"
    with pytest.raises(ValueError, match="unit"):
        score_predictions(preds, gold, same=same, tasks=["diagnosis"], unit="series")


def test_compare_reaggregates_both_runs_under_one_protocol_and_unit(synth: Path, tmp_path: Path) -> None:
    from eval.compare import compare_runs

    gold = _gold(synth)
    run_eval(synth, tmp_path / "shift", _ShiftedBoxes(gold), judge=FAST_JUDGE, n_resamples=20)
    run_eval(synth, tmp_path / "oracle", "oracle", judge=FAST_JUDGE, n_resamples=20, protocol="coco")
    shifted_coco = json.loads((tmp_path / "shift" / "summary.json").read_text())
    for protocol in ("nova", "coco"):
        result = compare_runs(tmp_path / "oracle", tmp_path / "shift", n_resamples=50, protocol=protocol)
        assert result["protocol"] == protocol and result["n_shared"] == 20
        images = [
            ([[0.0, 0.0, 4.0, 4.0, 0.99]] + [[b[0] + 3, b[1], b[2] + 3, b[3], 0.5] for b in g], g)
            for g in gold.values()
        ]
        expected = mean_localisation(images, protocol=protocol)["map_0.5"]
        assert result["metrics"]["map_0.5"]["a"] == pytest.approx(1.0)
        assert result["metrics"]["map_0.5"]["b"] == pytest.approx(expected, abs=1e-9)
    assert shifted_coco["protocol"] == "nova"
    by_image = compare_runs(tmp_path / "oracle", tmp_path / "shift", n_resamples=50, unit="image")
    assert by_image["unit"] == "image" and by_image["n_shared"] == 30 and by_image["n_shared_cases"] == 20


def test_compare_refuses_a_run_scored_before_protocols(synth: Path, tmp_path: Path) -> None:
    from eval.compare import compare_runs

    run_eval(synth, tmp_path / "o", "oracle", judge=FAST_JUDGE, n_resamples=20)
    old = tmp_path / "old"
    old.mkdir()
    rows = [json.loads(line) for line in (tmp_path / "o" / "case_metrics.jsonl").read_text().splitlines()]
    with (old / "case_metrics.jsonl").open("w") as fh:
        for row in rows:
            row.pop("images")
            row["stats"] = {k: v for k, v in row["stats"].items() if not k.startswith(("n_nova", "nova_"))}
            fh.write(json.dumps(row) + "\n")
    with pytest.raises(EvalDataError, match="before protocols") as info:
        compare_runs(tmp_path / "o", old)
    assert "--resume" in (info.value.hint or "")


def test_cli_protocol_and_unit(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zebra_cli.eval  # noqa: F401  (registers `zebra eval nova/compare`)
    from zebra_cli import main

    def cli(argv: list[str]) -> tuple[int, str, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    out_dir = tmp_path / "o"
    base = ["eval", "nova", "--data", str(synth), "--predictor", "oracle", "--resamples", "20"]
    code, out, _ = cli([*base, "--out", str(out_dir), "--protocol", "coco", "--unit", "image", "--json"])
    summary = json.loads(out)
    assert code == 0 and (summary["protocol"], summary["unit"]) == ("coco", "image")
    code, out, _ = cli([*base, "--out", str(tmp_path / "t")])
    assert code == 0 and "localisation protocol: nova; scoring unit: case" in out
    code, _, err = cli([*base, "--out", str(tmp_path / "bad"), "--protocol", "voc"])
    assert code == 2 and "protocol" in err.lower()
    code, out, _ = cli(["eval", "compare", str(out_dir), str(tmp_path / "t"), "--unit", "image", "--json"])
    result = json.loads(out)
    assert code == 0 and result["unit"] == "image" and result["protocol"] == "nova"
