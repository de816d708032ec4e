"""One triage with the real built-in stack (the agent with its built-in backends) when an index bundle exists.

The bundle is ``$ZEBRA_TEST_BUNDLE`` or ``~/.zebra/bundles/default`` (made by ``zebra setup``); without one the
test skips. The agent degrades without the built-in VLM checkpoint (no findings), which this test accepts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from triage.agent_adapter import AnalyserSpec
from triage.engine import TriageOptions, run_triage


def _real_bundle() -> Path | None:
    path = Path(os.environ.get("ZEBRA_TEST_BUNDLE") or Path.home() / ".zebra" / "bundles" / "default")
    return path if (path / "manifest.json").is_file() else None


@pytest.mark.slow
def test_builtin_stack_triages_a_small_worklist(nova_worklist: Path, zebra_env: Path, tmp_path: Path) -> None:
    bundle = _real_bundle()
    if bundle is None:
        pytest.skip("no index bundle (set ZEBRA_TEST_BUNDLE or run 'zebra setup')")
    pytest.importorskip("agent.api", reason="the diagnostic agent (agent.api) is not installed yet")
    summary = run_triage(
        nova_worklist,
        out=tmp_path / "out",
        analyser=AnalyserSpec(analyser="agent", bundle=str(bundle), max_images=1),
        options=TriageOptions(progress=False),
    )
    assert summary.complete and summary.counts["done"] == 8, summary.counts
    from sqlalchemy import select

    from store import Store, TriageItem

    store = Store.from_settings()
    with store.session() as s:
        results = [r for r in s.scalars(select(TriageItem.result).where(TriageItem.run_id == summary.run_id))]
    store.dispose()
    for result in results:
        assert result["analyser"].startswith("agent(")
        assert result["differential"] or result["abstained"]
        assert 0 <= result["priority"]["score"] <= 100 and result["priority"]["drivers"]
    html = (tmp_path / "out" / "triage.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= summary.counts["done"]
