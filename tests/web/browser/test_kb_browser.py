"""The page while the default knowledge base is still being built (issue 16): the progress line, image findings,
and a "not ready yet" answer instead of an error. Real agent (test bundle machinery, fake VLM), real Chromium."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture
def building(zebra_env: Path) -> Iterator[Path]:
    """A live build (its lock held) at 43 %, about 6 min left; no bundle published."""
    (zebra_env / "kb-build.json").write_text(
        json.dumps({"state": "building", "fraction": 0.43, "eta_s": 360, "stage": "embedding chunks"})
    )
    with open(zebra_env / "kb-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield zebra_env


@pytest.fixture
def kb_server(make_app, users, building, web_settings, serve) -> str:
    if not CHROMIUM.is_file():
        pytest.skip("Chromium not found at /usr/bin/chromium")
    pytest.importorskip("playwright.sync_api")
    from agent.api import Agent
    from tests.agent.conftest import FakeVLM, make_config

    agent = Agent(make_config(web_settings.bundle_dir), checkpointer=None, vlm=FakeVLM())
    return serve(make_app(agent_factory=lambda: agent))


def test_page_shows_progress_and_a_not_ready_answer(kb_server: str, web: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(kb_server + "/")
            page.get_by_test_id("login-username").fill("alice")
            page.get_by_test_id("login-password").fill(web.PASSWORD)
            page.get_by_test_id("login-submit").click()
            line = page.get_by_test_id("kb-status")
            expect(line).to_be_visible(timeout=30_000)
            expect(line).to_contain_text("Knowledge base: 43 %, about 6 min left", timeout=30_000)
            image = tmp_path / "scan.png"
            image.write_bytes(web.png_bytes(size=96, seed=3))
            page.get_by_test_id("upload-current").set_input_files(str(image))
            expect(page.get_by_test_id("upload-status")).to_contain_text("loaded", timeout=60_000)
            page.get_by_test_id("question-input").fill("What is the most likely diagnosis?")
            page.get_by_test_id("ask-button").click()
            log = page.get_by_test_id("chat-log")
            expect(log).to_contain_text("not ready yet", timeout=60_000)
            expect(log).to_contain_text("being built (43 %, about 6 min left)")
            assert "error" not in (page.get_by_test_id("ask-status").inner_text() or "").lower()
        finally:
            browser.close()
