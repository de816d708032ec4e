"""The local engine end to end with the fake analyser: results, per-item errors, resume, processes, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from triage.agent_adapter import AnalyserSpec
from triage.engine import TriageOptions, run_triage
from triage.errors import RunExistsError


def test_in_process_run_records_errors_and_goes_on(
    csv_worklist: Path, store, tmp_path: Path, snapshot
) -> None:
    spec = AnalyserSpec(analyser="fake:fail=ACC0004")
    summary = run_triage(
        csv_worklist,
        out=tmp_path / "out",
        analyser=spec,
        options=TriageOptions(progress=False),
        run_name="r",
        store=store,
    )
    assert summary.counts["done"] == 11 and summary.counts["error"] == 1 and summary.complete
    assert summary.processed == 12 and summary.studies_per_minute and summary.studies_per_minute > 0
    snap = snapshot(store.url.render_as_string(hide_password=False), "r")
    errors = {k: v for k, v in snap.items() if v[0] == "error"}
    assert len(errors) == 1
    (_status, priority, result, error) = next(iter(errors.values()))
    assert priority is None and result is None and "Injected failure" in error
    done = [v for v in snap.values() if v[0] == "done"]
    assert all(0 <= v[1] <= 100 and v[2]["priority"]["score"] == v[1] for v in done)
    with_change = [v for v in done if v[2]["change"]]
    assert len(with_change) == 4  # every third of 12 studies has a prior
    rows = list(csv.DictReader((tmp_path / "out" / "triage.csv").open(encoding="utf-8")))
    assert len(rows) == 12 and rows[-1]["status"] == "error" and rows[-1]["accession"] == "ACC0004"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"]["done"] == 11

    # A second run of the same name needs --resume; resuming a finished run does nothing and changes nothing.
    with pytest.raises(RunExistsError):
        run_triage(
            csv_worklist,
            out=tmp_path / "o2",
            analyser=spec,
            options=TriageOptions(progress=False),
            run_name="r",
            store=store,
        )
    again = run_triage(
        csv_worklist,
        out=tmp_path / "o2",
        analyser=spec,
        options=TriageOptions(progress=False),
        resume=True,
        store=store,
    )
    assert again.run_id == summary.run_id and again.processed == 0 and again.resumed
    assert snapshot(store.url.render_as_string(hide_password=False), "r") == snap


def test_cli_triage_command(
    csv_worklist: Path, zebra_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zebra_cli.triage  # noqa: F401  (registers the commands)
    from zebra_cli import main

    out = tmp_path / "cli-out"
    main(
        [
            "triage",
            str(csv_worklist),
            "--out",
            str(out),
            "--analyser",
            "fake",
            "--no-progress",
            "--json",
            "--run-name",
            "cli",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["done"] == 12 and summary["complete"] and summary["run_name"] == "cli"
    assert (out / "triage.html").is_file()
    with pytest.raises(SystemExit) as exc:
        main(["triage", str(csv_worklist), "--out", str(out), "--analyser", "fake", "--run-name", "cli"])
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["triage", str(tmp_path / "none.csv"), "--out", str(out)])
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_worker_that_does_not_see_the_worklist_stops_before_claiming(store, tmp_path: Path) -> None:
    from triage import queue
    from triage.types import WorkItem
    from triage.worker import WorkerConfig, worker_loop
    from zebra.errors import ConfigError

    run = queue.open_run(
        store,
        name="r",
        items=[WorkItem(item_key="k", accession="A", study_path=str(tmp_path / "s.png"))],
        worklist="wl",
        bundle=None,
        config={},
        resume=False,
    ).id
    missing = tmp_path / "not-mounted" / "worklist.csv"
    cfg = WorkerConfig(
        store_url="unused", run_id=run, analyser={"analyser": "fake"}, require_path=str(missing)
    )
    with pytest.raises(ConfigError) as err:
        worker_loop(cfg, store=store)
    assert "worklist.csv" in err.value.message and str(tmp_path) not in err.value.message
    assert queue.counts(store, run)["pending"] == 1  # nothing claimed
