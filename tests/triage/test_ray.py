"""The Ray engine gives the local engine's results (skipped when ray is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.agent_adapter import AnalyserSpec
from triage.engine import TriageOptions, run_triage


def test_ray_engine_matches_local(nova_worklist: Path, zebra_env: Path, tmp_path: Path, snapshot) -> None:
    pytest.importorskip("ray")
    from store import Store

    spec = AnalyserSpec(analyser="fake:fail=0005")
    urls = {}
    for engine in ("local", "ray"):
        store = Store(f"sqlite:///{tmp_path / f'{engine}.db'}")
        options = TriageOptions(
            engine=engine, workers=2 if engine == "ray" else 1, ray_num_cpus=2, progress=False, poll_s=0.2
        )
        summary = run_triage(
            nova_worklist, out=tmp_path / engine, analyser=spec, options=options, store=store
        )
        assert summary.complete and summary.counts["done"] == 7 and summary.counts["error"] == 1
        urls[engine] = store.url.render_as_string(hide_password=False)
        store.dispose()
    assert snapshot(urls["ray"]) == snapshot(urls["local"])
    assert (tmp_path / "ray" / "triage.csv").read_text() == (tmp_path / "local" / "triage.csv").read_text()
