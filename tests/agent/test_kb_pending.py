"""While the default knowledge base is being built: image findings still come, a differential waits, and the
bundle is picked up without a restart once published."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

from .conftest import HISTORY, FakeVLM, make_config


def test_questions_wait_for_the_knowledge_base_and_pick_it_up_without_restart(
    bundle: Path, zebra_env: Path, scan
) -> None:
    from agent.api import Agent
    from zebra.config import get_settings

    settings = get_settings()
    target = settings.bundle_dir
    (zebra_env / "kb-build.json").write_text(
        json.dumps({"state": "building", "fraction": 0.43, "eta_s": 360, "stage": "embedding chunks"})
    )
    agent = Agent(make_config(target), checkpointer=None, vlm=FakeVLM())
    with open(zebra_env / "kb-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        answer, state = agent.run("What is the diagnosis?", images=[("s.png", scan)], history=HISTORY)
    assert answer.abstained and answer.differential == []
    assert "being built (43 %, about 6 min left)" in answer.abstain_reason
    assert state["kb_pending"] and answer.findings, "image analysis works while the knowledge base builds"
    assert "43 %" in answer.text
    # the build dies without publishing: the answer says so and how to fix it
    answer, _ = agent.run("What is the diagnosis?", history=HISTORY)
    assert (
        answer.abstained and "interrupted" in answer.abstain_reason and "zebra setup" in answer.abstain_reason
    )
    # published (as the atomic writer does, all at once): the same agent answers with a differential
    shutil.copytree(bundle, target)
    answer, state = agent.run("What is the diagnosis?", history=HISTORY)
    assert not state.get("kb_pending") and answer.differential
    assert answer.differential[0].diagnosis == "Meningioma"


def test_a_missing_non_default_bundle_is_still_an_error(zebra_env: Path, tmp_path: Path) -> None:
    from agent.api import Agent

    agent = Agent(make_config(tmp_path / "nope"), checkpointer=None, vlm=FakeVLM())
    assert agent.resources.knowledge_base_pending() is None
