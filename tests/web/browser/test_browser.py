"""The page in a real browser: Debian's Chromium driven by Playwright against uvicorn on loopback.

Skips when /usr/bin/chromium or the ``playwright`` package is missing (never runs ``playwright install``).
Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[3]
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _requirements() -> None:
    if not CHROMIUM.is_file():
        pytest.skip("Chromium not found at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (dev extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_agent(tmp_path) -> Any:
    """The scripted agent behind the live server (``calls`` says how many images each question carried)."""
    from zebra_web.testing import StreamingScriptedAgent

    return StreamingScriptedAgent(piece_delay_s=0.04, thumb_dir=tmp_path / "thumbs")


@pytest.fixture
def live_server(make_app, users, live_agent) -> Iterator[str]:
    _requirements()
    import uvicorn

    app = make_app(agent_factory=lambda: live_agent)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
def page(live_server, tmp_path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1440, "height": 900},
        )
        try:
            pg = context.pages[0] if context.pages else context.new_page()
            pg.set_default_timeout(20_000)
            yield pg
        finally:
            context.close()


def _canvas_signature(page: Any) -> list[int]:
    """A coarse fingerprint of the canvas pixels (sums over a 4x4 grid)."""
    return page.evaluate(
        """() => {
        const c = document.querySelector('[data-testid=viewer-canvas]');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const out = new Array(16).fill(0);
        for (let y = 0; y < c.height; y += 3) for (let x = 0; x < c.width; x += 3) {
          const i = (y * c.width + x) * 4;
          out[Math.min(3, Math.floor(4 * y / c.height)) * 4 + Math.min(3, Math.floor(4 * x / c.width))]
            += d[i] + 2 * d[i + 1] + 3 * d[i + 2];
        }
        return out;
    }"""
    )


def test_sign_in_upload_ask_overlay_evidence(page, live_server, ct_small, web, tmp_path):
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"{msg.text} {msg.location.get('url', '')}")
            if msg.type == "error" and "401" not in msg.text
            else None
        ),
    )
    page.goto(live_server + "/")
    notice = page.get_by_test_id("research-notice")
    assert "Research use only" in notice.inner_text() and notice.is_visible()

    # Sign in: a wrong password first, then the right one.
    page.get_by_test_id("login-username").fill("alice")
    page.get_by_test_id("login-password").fill("not the password")
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("login-error").wait_for(state="visible")
    assert "Wrong user name or password" in page.get_by_test_id("login-error").inner_text()
    page.screenshot(path=str(SHOTS / "01-login.png"))
    page.get_by_test_id("login-password").fill(web.PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("user-name").wait_for(state="visible")
    assert page.get_by_test_id("user-name").inner_text() == "alice"

    # Upload the DICOM as the current study; the viewer draws it.
    page.get_by_test_id("upload-current").set_input_files(str(ct_small))
    expect(page.get_by_test_id("upload-status")).to_contain_text("loaded")
    expect(page.get_by_test_id("wc-value")).not_to_have_text("-")
    page.wait_for_timeout(300)
    before = _canvas_signature(page)
    assert sum(before) > 0, "the canvas is black"
    page.screenshot(path=str(SHOTS / "02-dicom-loaded.png"))

    # Window/level: moving the slider re-fetches the PNG with wc/ww and changes the picture.
    with page.expect_response(lambda r: "/images/0.png?wc=" in r.url and r.status == 200):
        page.get_by_test_id("preset-default").page.evaluate(
            """() => { const s = document.querySelector('[data-testid=wc-slider]');
                       s.value = String(Number(s.max) - 10); s.dispatchEvent(new Event('input')); }"""
        )
    page.wait_for_timeout(400)
    assert _canvas_signature(page) != before
    page.get_by_test_id("preset-default").click()
    page.wait_for_timeout(400)

    # A PNG as the prior study.
    prior = tmp_path / "prior.png"
    prior.write_bytes(web.png_bytes(size=96, seed=5))
    page.get_by_test_id("upload-prior").set_input_files(str(prior))
    expect(page.get_by_test_id("upload-status")).to_contain_text("Prior")
    assert page.get_by_test_id("show-prior").is_enabled()
    page.get_by_test_id("show-current").click()
    page.wait_for_timeout(300)

    # Ask: the answer streams in, then the structured parts appear.
    page.get_by_test_id("question-input").fill("What is the most likely diagnosis?")
    page.get_by_test_id("ask-button").click()
    streaming = page.locator("[data-testid=answer-text].streaming")
    expect(streaming).to_contain_text("[test agent] The")
    partial = streaming.inner_text()
    page.get_by_test_id("differential-table").last.wait_for(state="visible")
    answer = page.locator("[data-testid=answer]").last
    full = answer.get_by_test_id("answer-text").inner_text()
    assert "pilocytic astrocytoma" in full and len(partial) < len(full)
    rows = answer.get_by_test_id("differential-row")
    assert rows.count() == 3 and "62%" in rows.first.inner_text()
    assert "Change since prior" in answer.get_by_test_id("change-statement").inner_text()
    expect(page.get_by_test_id("overlay-status")).to_contain_text("overlay available")
    page.screenshot(path=str(SHOTS / "03-answer.png"))

    # Heatmap toggle changes the drawn image.
    page.wait_for_timeout(300)
    no_heat = _canvas_signature(page)
    page.get_by_test_id("toggle-heatmap").check()
    page.wait_for_timeout(300)
    assert _canvas_signature(page) != no_heat

    # Evidence panel: citations with quotes, similar-image thumbnail loaded.
    answer.get_by_test_id("evidence-toggle").click()
    panel = answer.get_by_test_id("evidence-panel")
    panel.wait_for(state="visible")
    assert panel.get_by_test_id("citation").count() == 3
    assert "cystic mass with an enhancing mural nodule" in panel.inner_text()
    thumb = panel.get_by_test_id("similar-thumb").first
    thumb.wait_for(state="visible")
    expect(thumb).to_have_js_property("complete", True)
    assert thumb.evaluate("img => img.naturalWidth") > 0
    answer.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "04-heatmap-evidence.png"))

    # The session is listed; reloading the page keeps the sign-in and shows the history.
    assert page.get_by_test_id("session-item").count() == 1
    page.reload()
    page.get_by_test_id("session-item").first.click()
    page.locator("[data-testid=answer]").first.wait_for(state="visible")
    assert "pilocytic" in page.locator("[data-testid=answer-text]").first.inner_text()
    page.wait_for_timeout(500)
    page.locator("[data-testid=answer]").first.get_by_test_id("evidence-toggle").click()
    page.get_by_test_id("toggle-heatmap").check()
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / "05-reloaded.png"))
    assert not problems, problems

    # The API reference renders from /openapi.json with the session cookie, without any CDN.
    page.goto(live_server + "/docs")
    expect(page.get_by_test_id("api-ops")).to_contain_text("/api/sessions/{session_id}/messages")
    assert not problems, problems
    page.goto(live_server + "/")

    # Sign out returns to the sign-in form.
    page.get_by_test_id("signout").click()
    page.get_by_test_id("login-submit").wait_for(state="visible")


@pytest.fixture
def held_intake(monkeypatch) -> Iterator[SimpleNamespace]:
    """Holds every upload in de-identification until the test calls ``release.set()``.

    ``entered`` is set once an upload reached de-identification; ``fail`` (an exception) makes it fail there.
    Request this fixture after ``page``: it is torn down first, so the server thread is never left waiting.
    """
    from zebra_web.routes import studies as study_routes

    hold = SimpleNamespace(entered=threading.Event(), release=threading.Event(), fail=None)
    parse = study_routes._parse

    def held(ctx: Any, source: Path, scratch: Path) -> Any:
        hold.entered.set()
        if not hold.release.wait(60):
            raise RuntimeError("the test never released the upload")
        if hold.fail is not None:
            raise hold.fail
        return parse(ctx, source, scratch)

    monkeypatch.setattr(study_routes, "_parse", held)
    yield hold
    hold.release.set()


def _sign_in(page: Any, live_server: str, web: Any) -> None:
    page.goto(live_server + "/")
    page.get_by_test_id("login-username").fill("alice")
    page.get_by_test_id("login-password").fill(web.PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("user-name").wait_for(state="visible")


def _wait_for(page: Any, event: threading.Event, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not event.is_set():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        page.wait_for_timeout(50)


def _sessions(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("async () => (await fetch('/api/sessions')).json()")


def test_ask_while_deidentifying_waits_and_uses_the_image(
    page, live_server, live_agent, held_intake, ct_small, web
):
    """Issue: Ask during de-identification sent the question without the image and never linked the study."""
    from playwright.sync_api import expect

    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    _sign_in(page, live_server, web)

    page.get_by_test_id("upload-current").set_input_files(str(ct_small))
    _wait_for(page, held_intake.entered, "the upload to reach de-identification")
    expect(page.get_by_test_id("upload-status")).to_contain_text("de-identifying")
    page.get_by_test_id("question-input").fill("What is the most likely diagnosis?")
    page.get_by_test_id("ask-button").click()

    # The question is held back, and the page says why.
    page.wait_for_timeout(500)
    assert live_agent.calls == [], "the question was sent without the image"
    expect(page.get_by_test_id("ask-status")).to_contain_text("Waiting for the image to be de-identified")
    expect(page.get_by_test_id("ask-button")).to_be_disabled()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "06-ask-waits-for-upload.png"))

    held_intake.release.set()
    expect(page.get_by_test_id("upload-status")).to_contain_text("loaded")
    answer = page.locator("[data-testid=answer]").last
    answer.get_by_test_id("differential-table").wait_for(state="visible")
    assert "pilocytic astrocytoma" in answer.get_by_test_id("answer-text").inner_text()
    assert len(live_agent.calls) == 1 and live_agent.calls[0]["n_images"] >= 1
    expect(page.get_by_test_id("ask-status")).to_have_text("")

    # The session is linked to the study, and a later question uses it too.
    study_id = page.evaluate("async () => (await fetch('/api/studies')).json()")[0]["id"]
    sessions = _sessions(page)
    assert len(sessions) == 1 and sessions[0]["study_id"] == study_id
    # The server holding a question back (409: an upload is still being prepared) makes the page wait and retry.
    sent: list[dict[str, Any]] = []

    def not_ready_once(route: Any) -> None:
        sent.append(route.request.post_data_json)
        if len(sent) > 1:
            route.continue_()
            return
        route.fulfill(
            status=409,
            headers={"Retry-After": "1"},
            content_type="application/json",
            body=json.dumps({"error": "The image is still being prepared.", "hint": "Ask again."}),
        )

    page.route("**/api/sessions/*/messages", not_ready_once)
    page.get_by_test_id("question-input").fill("Is there a mass effect?")
    page.get_by_test_id("ask-button").click()
    expect(page.get_by_test_id("ask-status")).to_contain_text("Waiting for the image to be de-identified")
    expect(page.locator("[data-testid=answer]")).to_have_count(2)
    assert len(sent) == 2 and all(body["study_id"] == study_id for body in sent)
    assert page.locator("#chat-log [role=alert]").count() == 0
    page.locator("[data-testid=answer]").last.get_by_test_id("differential-table").wait_for(state="visible")
    assert len(live_agent.calls) == 2 and live_agent.calls[1]["n_images"] >= 1
    assert _sessions(page)[0]["study_id"] == study_id
    assert not problems, problems


def test_ask_while_upload_fails_says_so_and_sends_nothing(
    page, live_server, live_agent, held_intake, ct_small, web
):
    from playwright.sync_api import expect

    from zebra.errors import CorruptFileError

    held_intake.fail = CorruptFileError("The file is damaged.", hint="Export it again.")
    _sign_in(page, live_server, web)
    page.get_by_test_id("upload-current").set_input_files(str(ct_small))
    _wait_for(page, held_intake.entered, "the upload to reach de-identification")
    page.get_by_test_id("question-input").fill("What is the most likely diagnosis?")
    page.get_by_test_id("ask-button").click()
    page.wait_for_timeout(500)
    assert live_agent.calls == [], "the question was sent without the image"
    expect(page.get_by_test_id("ask-status")).to_contain_text("Waiting for the image to be de-identified")

    held_intake.release.set()
    expect(page.get_by_test_id("upload-status")).to_contain_text("The upload failed")
    expect(page.get_by_test_id("upload-status")).to_contain_text("The file is damaged.")
    alert = page.locator("#chat-log [role=alert]").last
    expect(alert).to_contain_text("not sent")
    assert live_agent.calls == []
    assert page.locator("[data-testid=answer]").count() == 0
    # Nothing pretends the image is loaded; the question is kept for another try.
    expect(page.locator("#viewer-title")).to_have_text("No study loaded")
    expect(page.get_by_test_id("question-input")).to_have_value("What is the most likely diagnosis?")
    expect(page.get_by_test_id("ask-button")).to_be_enabled()


def test_change_password_and_delete_study(page, live_server, web, tmp_path):
    """Issue 15: the account dialog changes one's password and deletes a study with what derives from it."""
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    new_password = "a much better passphrase"
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def sign_in(password: str) -> None:
        page.get_by_test_id("login-username").fill("bob")
        page.get_by_test_id("login-password").fill(password)
        page.get_by_test_id("login-submit").click()

    page.goto(live_server + "/")
    sign_in(web.PASSWORD)
    page.get_by_test_id("user-name").wait_for(state="visible")
    scan = tmp_path / "scan.png"
    scan.write_bytes(web.png_bytes(size=96, seed=7))
    page.get_by_test_id("upload-current").set_input_files(str(scan))
    expect(page.get_by_test_id("upload-status")).to_contain_text("loaded")
    expect(page.get_by_test_id("delete-shown-study")).to_be_visible()

    # The account dialog lists the study and the storage used.
    page.get_by_test_id("account-button").click()
    dialog = page.get_by_test_id("account-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("study-item")).to_have_count(1)
    expect(page.get_by_test_id("storage-status")).to_contain_text("quota used")
    assert page.get_by_test_id("admin-section").is_hidden()  # bob is no administrator

    # Change the password: a typo in the confirmation first, then for real.
    page.get_by_test_id("pw-current").fill(web.PASSWORD)
    page.get_by_test_id("pw-new").fill(new_password)
    page.get_by_test_id("pw-confirm").fill(new_password + "x")
    page.get_by_test_id("pw-submit").click()
    expect(page.get_by_test_id("pw-status")).to_contain_text("do not match")
    page.get_by_test_id("pw-confirm").fill(new_password)
    page.get_by_test_id("pw-submit").click()
    expect(page.get_by_test_id("pw-status")).to_contain_text("Password changed")
    page.screenshot(path=str(SHOTS / "06-account-password.png"))

    # Delete the study (confirmed in the browser's dialog): the list, the viewer and the sessions empty.
    page.once("dialog", lambda d: d.accept())
    page.get_by_test_id("delete-study").first.click()
    expect(page.get_by_test_id("study-status")).to_contain_text("deleted")
    expect(page.get_by_test_id("study-item")).to_have_count(0)
    page.screenshot(path=str(SHOTS / "07-account-study-deleted.png"))
    assert page.request.get(live_server + "/api/studies").json() == []
    page.get_by_test_id("account-close").click()
    expect(page.locator("#viewer-title")).to_have_text("No study loaded")
    expect(page.get_by_test_id("delete-shown-study")).to_be_hidden()
    expect(page.get_by_test_id("session-item")).to_have_count(0)

    # The old password no longer signs in; the new one does.
    page.get_by_test_id("signout").click()
    sign_in(web.PASSWORD)
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong user name or password")
    sign_in(new_password)
    expect(page.get_by_test_id("user-name")).to_have_text("bob")
    assert not problems, problems


def test_administrator_manages_users_in_the_page(page, live_server, web):
    """Issue 15: an administrator disables, re-enables and signs out a user from the account dialog."""
    import httpx
    from playwright.sync_api import expect

    def bob_signs_in() -> int:
        body = {"username": "bob", "password": web.PASSWORD}
        return httpx.post(live_server + "/api/auth/login", json=body, timeout=30).status_code

    page.goto(live_server + "/")
    page.get_by_test_id("login-username").fill("alice")
    page.get_by_test_id("login-password").fill(web.PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("account-button").click()
    admin = page.get_by_test_id("admin-section")
    expect(admin).to_be_visible()
    bob = page.locator("[data-testid=user-row][data-username=bob]")
    expect(bob).to_contain_text("active")
    # No disabling or deleting oneself from the page.
    alice = page.locator("[data-testid=user-row][data-username=alice]")
    expect(alice.get_by_test_id("user-toggle")).to_have_count(0)
    expect(alice.get_by_test_id("user-delete")).to_have_count(0)

    bob.get_by_test_id("user-toggle").click()
    expect(page.get_by_test_id("admin-status")).to_contain_text("bob disabled")
    expect(bob).to_contain_text("disabled")
    assert bob_signs_in() == 401
    page.screenshot(path=str(SHOTS / "08-account-users.png"))
    bob.get_by_test_id("user-toggle").click()
    expect(bob).to_contain_text("active")
    assert bob_signs_in() == 200
    expect(bob.locator("td").nth(2)).to_have_text("0")  # the dialog's list is from before that sign-in
    bob.get_by_test_id("user-revoke").click()
    expect(page.get_by_test_id("admin-status")).to_contain_text("bob signed out everywhere")
