"""The harness end to end on a synthetic set: oracle, constant, retrieval; redaction; resume; CLI; compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from eval.errors import EvalConfigError
from eval.harness import deterministic_part, read_predictions, run_eval
from eval.judges import OfflineJudge
from eval.predictors import PREDICTORS, CasePrediction, create_predictor
from zebra_datasets import read_nova

HERE = Path(__file__).parent
FAST_JUDGE = OfflineJudge(synonyms=[])


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    import zebra_cli.eval  # noqa: F401  (registers `zebra eval nova/compare`)
    from zebra_cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_oracle_scores_perfectly(synth: Path, tmp_path: Path) -> None:
    summary = run_eval(synth, tmp_path / "oracle", "oracle", judge=FAST_JUDGE, n_resamples=100)
    assert summary["n_cases"] == 20
    for key in (
        "map_0.3",
        "map_0.5",
        "map_0.5_0.95",
        "acc50",
        "bleu4",
        "rouge_l",
        "term_f1",
        "top1",
        "top5",
        "coverage",
    ):
        assert summary[key] == pytest.approx(1.0), key
    assert summary["ece"] == pytest.approx(0.0) and summary["cae_rate"] == pytest.approx(0.0)
    assert summary["ci"]["top1"] == [1.0, 1.0]
    assert summary["counts"]["n_gold_images"] > 0 and summary["counts"]["n_caption_pairs"] > 0
    assert "timing" in summary and "run" in summary and summary["run"]["predictor"] == "oracle"
    rows = read_predictions(tmp_path / "oracle" / "predictions.jsonl")
    assert len(rows) == 20
    assert set(rows[0]) >= {
        "case_id",
        "diagnoses",
        "probabilities",
        "boxes",
        "captions",
        "abstained",
        "reason",
        "latency_s",
    }
    report = (tmp_path / "oracle" / "report.html").read_text()
    assert "<svg" in report and "oracle" in report and "map_0.5" in report
    on_disk = json.loads((tmp_path / "oracle" / "summary.json").read_text())
    assert deterministic_part(on_disk) == deterministic_part(summary)


def test_constant_predictor_top1_is_the_share_of_its_class(synth: Path, tmp_path: Path) -> None:
    truths = Counter(rows[0].final_diagnosis for rows in read_nova(synth).by_case().values())
    name, count = truths.most_common(1)[0]
    summary = run_eval(synth, tmp_path / "const", f"constant:{name}", judge=FAST_JUDGE, n_resamples=100)
    assert summary["top1"] == pytest.approx(count / 20)
    assert summary["top5"] == pytest.approx(count / 20)
    assert summary["ece"] == pytest.approx(abs(0.5 - count / 20))
    # no localisation or captioning task: those metrics are null, not zero
    for key in ("map_0.3", "map_0.5", "acc50", "bleu4", "rouge_l", "term_f1"):
        assert summary[key] is None and summary["ci"][key] is None
    lo, hi = summary["ci"]["top1"]
    assert lo <= count / 20 <= hi and hi - lo > 0


class Recorder:
    """Records what the harness hands to a predictor."""

    name = "recorder"
    tasks = frozenset({"diagnosis"})

    def __init__(self) -> None:
        self.calls: list[tuple[str, list, object]] = []

    def predict_case(self, case_id, records, dataset):  # type: ignore[no-untyped-def]
        self.calls.append((case_id, records, dataset))
        if case_id.endswith("3"):
            raise RuntimeError("boom")
        return CasePrediction(diagnoses=["x"], probabilities=[0.1])


def test_predictor_sees_no_labels_and_only_selected_inputs(synth: Path, tmp_path: Path) -> None:
    rec = Recorder()
    summary = run_eval(
        synth, tmp_path / "r", rec, inputs="history,image", ablate="image", judge=FAST_JUDGE, n_resamples=20
    )
    assert len(rec.calls) == 20
    n_rows = sum(len(records) for _, records, _ in rec.calls)
    assert n_rows == len(read_nova(synth))  # one call per case with all of its rows
    for _, records, dataset in rec.calls:
        assert dataset is None  # image ablated
        for r in records:
            assert r.bboxes == [] and r.final_diagnosis == "" and r.caption_text == ""
            assert r.clinical_history  # history was selected
            assert r.image_path == ""
            assert not {"lesion_type", "attributes", "mask_path", "box_labels"} & set(r.meta)
    assert summary["run"]["inputs"] == ["history"] and summary["run"]["ablate"] == ["image"]
    assert summary["counts"]["n_errors"] == 2  # syn0-0003 and syn0-0013 raised
    rows = {r["case_id"]: r for r in read_predictions(tmp_path / "r" / "predictions.jsonl")}
    assert rows["syn0-0003"]["abstained"] and rows["syn0-0003"]["reason"].startswith("error: RuntimeError")

    rec2 = Recorder()
    run_eval(synth, tmp_path / "r2", rec2, inputs="image,caption", judge=FAST_JUDGE, n_resamples=20, limit=3)
    assert len(rec2.calls) == 3
    _, records, dataset = rec2.calls[0]
    assert dataset is not None and dataset.load_image(records[0]).size == (64, 64)
    assert all(r.caption_text and not r.clinical_history for r in records)


def test_existing_run_needs_resume_and_same_settings(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_eval(synth, out, "constant:a", judge=FAST_JUDGE, n_resamples=20, limit=2, report=False)
    with pytest.raises(EvalConfigError, match="--resume"):
        run_eval(synth, out, "constant:a", judge=FAST_JUDGE, n_resamples=20, limit=2)
    with pytest.raises(EvalConfigError, match="predictor"):
        run_eval(synth, out, "constant:b", judge=FAST_JUDGE, n_resamples=20, limit=2, resume=True)
    with pytest.raises(EvalConfigError, match="Unknown input"):
        run_eval(synth, tmp_path / "x", "constant:a", inputs="image,smell")


def test_workers_give_the_same_summary(synth: Path, tmp_path: Path) -> None:
    one = run_eval(synth, tmp_path / "w1", "oracle", judge=FAST_JUDGE, n_resamples=50, report=False)
    three = run_eval(
        synth, tmp_path / "w3", "oracle", judge=FAST_JUDGE, n_resamples=50, workers=3, report=False
    )
    assert deterministic_part(one) == deterministic_part(three)


def test_registry_and_agent_needs_a_bundle(tmp_path: Path) -> None:
    assert {"agent", "constant", "oracle", "retrieval"} <= set(PREDICTORS.available())
    with pytest.raises(EvalConfigError, match="does not exist"):
        create_predictor("agent", bundle=tmp_path / "no-bundle")
    with pytest.raises(EvalConfigError):
        create_predictor("retrieval:n_hits=3", bundle="/nonexistent", ablate=("retrieval",))
    with pytest.raises(EvalConfigError, match="Unknown retrieval predictor option"):
        create_predictor("retrieval:depth=3", bundle="/nonexistent")


def test_retrieval_predictor_beats_the_constant(synth: Path, synth_bundle: Path, tmp_path: Path) -> None:
    summary = run_eval(
        synth,
        tmp_path / "ret",
        "retrieval",
        inputs="history,caption",
        predictor_options={"bundle": synth_bundle},
        judge=FAST_JUDGE,
        n_resamples=100,
    )
    truths = Counter(rows[0].final_diagnosis for rows in read_nova(synth).by_case().values())
    assert summary["top1"] > truths.most_common(1)[0][1] / 20
    assert summary["top5"] >= summary["top1"]
    rows = read_predictions(tmp_path / "ret" / "predictions.jsonl")
    for row in rows:
        assert 1 <= len(row["diagnoses"]) <= 5
        assert sum(row["probabilities"]) <= 1.0 + 1e-9
        assert row["probabilities"] == sorted(row["probabilities"], reverse=True)
    assert summary["run"]["tasks"] == ["diagnosis"] and summary["map_0.5"] is None


def test_resume_after_kill_gives_the_same_summary(synth: Path, tmp_path: Path) -> None:
    script = str(HERE / "slow_run.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    full, partial = tmp_path / "full", tmp_path / "partial"
    subprocess.run([sys.executable, script, str(synth), str(full), "0"], check=True, env=env, timeout=120)

    proc = subprocess.Popen([sys.executable, script, str(synth), str(partial), "0.25"], env=env)
    pred_path = partial / "predictions.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if pred_path.is_file() and len(pred_path.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.kill()  # SIGKILL mid-run
    proc.wait(timeout=30)
    n_done = len(pred_path.read_text().splitlines())
    assert 4 <= n_done < 20, "the run should have been killed part-way"
    assert not (partial / "summary.json").exists()
    with pred_path.open("a") as fh:  # a torn last line, as if killed during a write
        fh.write('{"case_id": "syn0-00')

    subprocess.run(
        [sys.executable, script, str(synth), str(partial), "0", "--resume"], check=True, env=env, timeout=120
    )
    rows = [json.loads(line) for line in pred_path.read_text().splitlines()]
    assert sorted(r["case_id"] for r in rows) == sorted(read_nova(synth).by_case())
    a = json.loads((full / "summary.json").read_text())
    b = json.loads((partial / "summary.json").read_text())
    assert deterministic_part(a) == deterministic_part(b)
    assert 0 < a["top1"] < 1 and a["ci"]["top1"][0] < a["ci"]["top1"][1]


def test_cli_nova_compare_and_agent(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], zebra_env: Path
) -> None:
    oracle, const = tmp_path / "o", tmp_path / "c"
    code, out, _ = _cli(
        [
            "eval",
            "nova",
            "--data",
            str(synth),
            "--out",
            str(oracle),
            "--predictor",
            "oracle",
            "--resamples",
            "50",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and json.loads(out)["top1"] == 1.0
    code, out, _ = _cli(
        [
            "eval",
            "nova",
            "--data",
            str(synth),
            "--out",
            str(const),
            "--predictor",
            "constant:nothing",
            "--resamples",
            "50",
        ],
        capsys,
    )
    assert code == 0 and "top-1" in out and "0.000" in out

    code, out, _ = _cli(["eval", "compare", str(oracle), str(const), "--resamples", "200", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["n_shared"] == 20
    top1 = result["metrics"]["top1"]
    assert top1["a"] == 1.0 and top1["b"] == 0.0 and top1["delta"] == 1.0 and top1["ci"] == [1.0, 1.0]
    assert result["metrics"]["map_0.5"]["delta"] is None  # B has no localisation task
    code, out, _ = _cli(["eval", "compare", str(oracle), str(const)], capsys)
    assert code == 0 and "A - B" in out

    code, _, err = _cli(
        ["eval", "nova", "--data", str(synth), "--out", str(tmp_path / "a"), "--predictor", "agent"], capsys
    )
    assert code == 2 and "bundle" in err.lower() and "does not exist" in err
    code, _, err_default = _cli(["eval", "nova", "--data", str(synth), "--out", str(tmp_path / "b")], capsys)
    # the default predictor is the product (the agent), on the default bundle, which the empty data dir lacks
    assert code == 2 and "bundle" in err_default.lower() and "does not exist" in err_default
    code, _, err_retrieval = _cli(
        ["eval", "nova", "--data", str(synth), "--out", str(tmp_path / "r"), "--predictor", "retrieval"],
        capsys,
    )
    assert code == 2 and "bundle" in err_retrieval.lower()
    code, _, err = _cli(["eval", "compare", str(tmp_path / "nope"), str(const)], capsys)
    assert code == 2 and "case_metrics.jsonl" in err


def test_llm_judge_in_the_harness_reports_agreement(synth: Path, tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_test_llm_server2", HERE / "llm_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    with module.chat_server() as server:
        summary = run_eval(
            synth, tmp_path / "llm", "oracle", judge=f"openai:{server['url']}", n_resamples=50, report=False
        )
        n_requests = len(server["requests"])
    assert summary["judge"] == "llm:default"
    agreement = summary["judge_agreement"]
    assert agreement["n"] >= 1 and agreement["raw"] == pytest.approx(1.0)
    assert summary["top1"] == pytest.approx(1.0)
    log = (tmp_path / "llm" / "judgments.jsonl").read_text().splitlines()
    assert len(log) == n_requests >= 1
