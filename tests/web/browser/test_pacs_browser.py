"""Open from PACS in the page: Debian's Chromium driven by Playwright against uvicorn on loopback, the PACS
stubbed in the server process. The form shows only where a PACS is configured; a study opened by accession
number loads in the viewer like an upload and the question that follows carries its image.

Skips when /usr/bin/chromium or the ``playwright`` package is missing (never runs ``playwright install``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "artifacts" / "screenshots"
ACCESSION = "ZB0042"
#: Generous: the machines that run this are often slow and loaded.
WAIT_MS = 60_000


class StubPacs:
    """One study (pydicom's real CT image as a 3-slice series) behind the accession number ``ACCESSION``."""

    def __init__(self) -> None:
        from pacs.samples import sample_study

        self.study = sample_study(ACCESSION, modality="CT", slices=3)
        self.searches: list[dict[str, Any]] = []

    def search_studies(self, filters: dict[str, Any], *, limit: int | None = None) -> list[dict[str, Any]]:
        self.searches.append(dict(filters))
        if filters != {"AccessionNumber": ACCESSION}:
            return []
        return [{"0020000D": {"vr": "UI", "Value": [self.study[0].StudyInstanceUID]}}]

    def fetch_study(self, study_uid: str) -> list[bytes]:
        out = []
        for ds in self.study:
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            out.append(buf.getvalue())
        return out


@pytest.fixture
def servers(web_settings, users, serve, tmp_path, monkeypatch) -> dict[str, Any]:
    """Two servers on one database: one with a (stubbed) PACS configured, one without."""
    if not CHROMIUM.is_file():
        pytest.skip("Chromium not found at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (dev extra)")
    from zebra.config import DicomwebSettings
    from zebra_web import create_app, pacs_open
    from zebra_web.testing import StreamingScriptedAgent

    pacs = StubPacs()
    monkeypatch.setattr(pacs_open, "make_client", lambda settings: pacs)
    agent = StreamingScriptedAgent(piece_delay_s=0.01, thumb_dir=tmp_path / "thumbs")
    configured = web_settings.model_copy(
        update={"dicomweb": DicomwebSettings(url="http://127.0.0.1:9/dicom-web")}
    )
    return {
        "pacs": pacs,
        "agent": agent,
        "with": serve(create_app(configured, agent_factory=lambda: agent)),
        "without": serve(create_app(web_settings, agent_factory=lambda: agent)),
    }


def _sign_in(page: Any, base: str, web: Any) -> None:
    page.goto(base + "/")
    page.get_by_test_id("login-username").fill("alice")
    page.get_by_test_id("login-password").fill(web.PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("user-name").wait_for(state="visible", timeout=WAIT_MS)


def test_open_from_pacs_by_accession_loads_the_viewer(servers: dict[str, Any], web: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

            # No PACS configured: no form (after the page has asked the server).
            with page.expect_response(lambda r: r.url.endswith("/api/pacs"), timeout=WAIT_MS):
                _sign_in(page, servers["without"], web)
            expect(page.get_by_test_id("pacs-form")).to_be_hidden(timeout=WAIT_MS)
            page.get_by_test_id("signout").click()
            page.get_by_test_id("login-submit").wait_for(state="visible", timeout=WAIT_MS)

            _sign_in(page, servers["with"], web)
            form = page.get_by_test_id("pacs-form")
            expect(form).to_be_visible(timeout=WAIT_MS)
            status = page.get_by_test_id("upload-status")

            # A wildcard is refused in the page; an unknown number by the server, with a clear message.
            page.get_by_test_id("pacs-value").fill("ZB*")
            page.get_by_test_id("pacs-open").click()
            expect(status).to_contain_text("no wildcards", timeout=WAIT_MS)
            page.get_by_test_id("pacs-value").fill("NOSUCH9")
            page.get_by_test_id("pacs-open").click()
            expect(status).to_contain_text("No study on the PACS has this accession number", timeout=WAIT_MS)
            assert servers["pacs"].searches == [{"AccessionNumber": "NOSUCH9"}]

            page.get_by_test_id("pacs-kind").select_option("accession")
            page.get_by_test_id("pacs-value").fill(ACCESSION)
            page.get_by_test_id("pacs-open").click()
            expect(status).to_contain_text("Study loaded from the PACS: CT, 3 image(s)", timeout=WAIT_MS)
            expect(page.locator("#viewer-title")).to_contain_text("Current: CT · 3 image(s)", timeout=WAIT_MS)
            expect(page.get_by_test_id("wc-value")).not_to_have_text("-", timeout=WAIT_MS)
            page.wait_for_function(
                """() => { const c = document.querySelector('[data-testid=viewer-canvas]');
                           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                           for (let i = 0; i < d.length; i += 4) if (d[i] > 0) return true;
                           return false; }""",
                timeout=WAIT_MS,
            )
            assert page.get_by_test_id("pacs-value").input_value() == ""
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "07-open-from-pacs.png"))
            assert page.get_by_test_id("session-item").count() == 1

            # The opened study is the session's current study: the question carries its image.
            page.get_by_test_id("question-input").fill("What is the most likely diagnosis?")
            page.get_by_test_id("ask-button").click()
            page.get_by_test_id("differential-table").last.wait_for(state="visible", timeout=WAIT_MS)
            assert servers["agent"].calls and servers["agent"].calls[-1]["n_images"] >= 1
            assert not problems, problems
        finally:
            browser.close()
