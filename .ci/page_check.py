"""Signs in to a running Zebra server with Chromium and checks the signed-in page (CI, wheel install check).

Usage: python .ci/page_check.py URL USER PASSWORD SCREENSHOT
Exits non-zero with a reason when the page does not load, sign-in fails, or the page shows an error.
"""

from __future__ import annotations

import sys

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main(url: str, user: str, password: str, screenshot: str) -> int:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            response = page.goto(url + "/")
            if response is None or response.status != 200:
                print(f"page_check: GET / answered {response.status if response else 'nothing'}")
                return 1
            page.get_by_test_id("login-username").fill(user)
            page.get_by_test_id("login-password").fill(password)
            page.get_by_test_id("login-submit").click()
            expect(page.get_by_test_id("user-name")).to_contain_text(user, timeout=60_000)
            expect(page.get_by_test_id("question-input")).to_be_visible()
            expect(page.get_by_test_id("kb-status")).to_be_visible()
            page.screenshot(path=screenshot)
            print(
                f"page_check: signed in as {user}; kb line: {page.get_by_test_id('kb-status').inner_text()!r}"
            )
            return 0
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
