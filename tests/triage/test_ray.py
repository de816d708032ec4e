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


def test_sqlite_store_is_refused_for_a_multi_node_cluster_only(store) -> None:
    from triage.ray_engine import check_store_reachable
    from zebra.errors import ConfigError

    check_store_reachable(store, 1)  # a one-machine Ray shares the SQLite file
    with pytest.raises(ConfigError) as err:
        check_store_reachable(store, 3)
    assert "3 nodes" in err.value.message and "ZEBRA_STORE__URL" in (err.value.hint or "")


def test_fake_hold_needs_its_gate(tmp_path: Path) -> None:
    from triage.errors import AnalyserError
    from triage.fake import FakeAnalyser, parse_options

    with pytest.raises(AnalyserError):
        parse_options("hold=ACC1")
    gate = tmp_path / "go"
    fake = FakeAnalyser(f"hold=ACC,gate={gate}")
    assert fake.hold == "ACC" and fake.gate == gate
