"""A real Chromium (Debian's package) driven by Playwright against pytest-django's live server.

Screenshots of every page visited go to test-artifacts/screenshots/; the README links copies
of the key ones kept in docs/screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
# plain synchronous ones, so Django's async-context guard does not apply here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make install` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                  "--no-first-run"],
        )  # fmt: skip
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser, live_server):
    """A new signed-out browser tab on the live server (one context per person)."""
    contexts = []

    def new_page():
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield new_page
    for context in contexts:
        context.close()


@pytest.fixture
def shoot():
    """Save a full-page screenshot under test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def screenshot(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(path), full_page=True)
        return path

    return screenshot


def sign_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


from tests.governance.approvals.conftest import team, template_version  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _anchors_of_this_test_only(settings, tmp_path):
    # Anchors outlive a test's database; a private store keeps other tests' anchors out of
    # the chain verification these pages run.
    settings.AUDIT_ANCHOR_BACKEND = "local"
    settings.AUDIT_ANCHOR_ROOT = tmp_path / "anchors"
