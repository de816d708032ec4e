"""Regenerates the README screenshot from a running ``zebra serve`` (the real agent, bundle and models).

Usage::

    ZEBRA_SCREENSHOT_PASSWORD=... python scripts/chat_screenshot.py http://127.0.0.1:8000 IMAGE OUT.png \
        [--user admin] [--question "..."]

Drives /usr/bin/chromium with Playwright: signs in, uploads IMAGE, asks the question, waits for the streamed
answer, shows the heatmap and the evidence panel, and saves a 1440 x 900 screenshot.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("chat_screenshot")

CHROMIUM = Path("/usr/bin/chromium")
QUESTION = "What is the most likely diagnosis and why? What else could it be?"


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("image", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--question", default=QUESTION)
    args = parser.parse_args()
    password = os.environ.get("ZEBRA_SCREENSHOT_PASSWORD")
    if not password:
        raise SystemExit("Set ZEBRA_SCREENSHOT_PASSWORD to the password of --user.")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=profile,
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            headless=True,
            viewport={"width": 1440, "height": 900},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(120_000)
        page.goto(args.url.rstrip("/") + "/")
        page.get_by_test_id("login-username").fill(args.user)
        page.get_by_test_id("login-password").fill(password)
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("user-name").wait_for(state="visible")
        page.get_by_test_id("upload-current").set_input_files(str(args.image))
        page.wait_for_timeout(1500)
        page.get_by_test_id("question-input").fill(args.question)
        page.get_by_test_id("ask-button").click()
        page.get_by_test_id("differential-table").last.wait_for(state="visible")
        page.get_by_test_id("toggle-heatmap").check()
        page.locator("[data-testid=answer]").last.get_by_test_id("evidence-toggle").click()
        page.wait_for_timeout(1500)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        context.close()
    log.info("saved %s", args.out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
