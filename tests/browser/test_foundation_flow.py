"""The Foundation flow in a real browser: Debian's Chromium driven by Playwright
against pytest-django's live server (which serves /static/ from the source tree).

KEYMETER_REQUIRE_BROWSER=1 (set by CI) turns a missing Chromium into a failure.
KEYMETER_SCREENSHOTS=1 refreshes docs/screenshots/*.png from this run.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from accounts.tokens import gateway_token_for
from tests.conftest import PASSWORD, make_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SECRET = "sk-proj-BrowserFlowSecret0123456789abcdefLm4Q"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("KEYMETER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@contextmanager
def _chromium() -> Iterator:
    # Playwright's sync API runs an event loop in this thread, and Django refuses ORM
    # calls while one runs: touch the database only outside this block.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def _screenshot(page, name: str) -> None:
    if os.environ.get("KEYMETER_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_the_stylesheet_is_served(live_server):
    with urllib.request.urlopen(f"{live_server.url}/static/css/keymeter.css") as response:
        assert response.status == 200
        assert "text/css" in response.headers["Content-Type"]
        assert ".btn--primary" in response.read().decode()


def test_log_in_create_project_add_key_and_token(live_server):
    _require_chromium()
    make_user("erin@example.org")
    with _chromium() as chromium:
        token = _run_flow(chromium, live_server.url)
    # The token shown in the browser is the one the gateway accepts.
    assert gateway_token_for(token) is not None


def _run_flow(chromium, base_url: str) -> str:
    problems: list[str] = []
    context = chromium.new_context(
        base_url=base_url, locale="en-US", viewport={"width": 1280, "height": 860}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    # Log in; the stylesheet applies (the CSP would block it if it were inline).
    page.goto("/accounts/login/")
    assert page.title().startswith("Log in")
    _screenshot(page, "login")
    assert page.eval_on_selector(".topbar", "e => getComputedStyle(e).backgroundColor") == (
        "rgb(16, 24, 40)"
    )
    page.get_by_label("Email").fill("erin@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/overview/")
    assert page.get_by_text("No projects yet").is_visible()
    page.goto("/projects/")

    # Create a project.
    page.get_by_label("Name").fill("Shop Backend")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/projects/shop-backend/")
    assert page.get_by_role("heading", name="Shop Backend").is_visible()

    # Add a provider key: only its type and last four characters come back.
    key_form = page.locator("form[action='/projects/shop-backend/keys/']")
    key_form.get_by_label("Environment").select_option(label="production")
    key_form.get_by_label("Secret key").fill(SECRET)
    key_form.get_by_role("button", name="Add key").click()
    page.wait_for_url("**/projects/shop-backend/")
    assert page.get_by_text("sk-proj-…Lm4Q").first.is_visible()
    html = page.content()
    assert SECRET not in html
    assert SECRET[8:-4] not in html

    # Create a gateway token: shown once, with a working copy button.
    token_form = page.locator("form[action='/projects/shop-backend/tokens/']")
    token_form.get_by_label("Environment").select_option(label="production")
    token_form.get_by_label("Name").fill("web-backend")
    token_form.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("km_")
    assert f'api_key="{token}"' in page.locator("#snippet-python").inner_text()
    page.locator("[data-copy='new-token']").click()
    page.get_by_text("Copied").first.wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == token

    # Back on the project page the token is gone for good.
    page.goto("/projects/shop-backend/")
    assert page.get_by_role("cell", name="web-backend", exact=True).is_visible()
    assert token not in page.content()
    assert SECRET not in page.content()
    _screenshot(page, "project")

    page.goto("/projects/")
    assert page.get_by_role("link", name="Shop Backend").is_visible()
    _screenshot(page, "projects")

    context.close()
    assert problems == []
    return token
