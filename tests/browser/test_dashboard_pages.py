"""The dashboard in a real browser (Debian's Chromium through Playwright) on the demo
data of `seed_demo`: charts drawn, budgets by role, keys shown by their last four,
CSV = table, Chinese, and no console errors on any page.

KEYMETER_REQUIRE_BROWSER=1 (CI) turns a missing Chromium into a failure.
KEYMETER_SCREENSHOTS=1 refreshes docs/screenshots/ from the page tour.
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Project, ProviderKey, User
from usage import demo
from usage.models import Budget, DailyUsage, ModelPrice

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "demo password for the browser"
SECRET = "sk-proj-BrowserDashboardKey0123456789abcdefghijT3BlbkFJqrstuvW9xZ"
# A short history keeps the suite quick; screenshots get the full 90 days of seed_demo.
DAYS = 90 if os.environ.get("KEYMETER_SCREENSHOTS") == "1" else 14

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("KEYMETER_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def demo_site(live_server, settings):
    """The demo data (DAYS days of calls) and known passwords for its three users."""
    _require_chromium()
    settings.TIME_ZONE = "UTC"
    if not ModelPrice.objects.exists():
        # An earlier transactional test emptied the price list the migration loads.
        migration = importlib.import_module("usage.migrations.0002_default_prices")
        migration.add_prices(apps, None)
    demo.seed_demo(days=DAYS)
    for user in User.objects.all():
        user.set_password(PASSWORD)
        user.save()
    return live_server.url


@contextmanager
def _browser() -> Iterator:
    # Playwright's sync API runs an event loop in this thread, and Django refuses ORM
    # calls while one runs: the tests touch the database only outside this block.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()


class Session:
    """One logged-in browser tab that records console errors and failed responses."""

    def __init__(self, browser, base_url: str, email: str, locale: str = "en-US") -> None:
        self.problems: list[str] = []
        self.context = browser.new_context(base_url=base_url, locale=locale,
                                           viewport={"width": 1280, "height": 860},
                                           accept_downloads=True)  # fmt: skip
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("response", self._response)
        self.page.goto("/accounts/login/")
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(r".*/overview/$"))

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text} ({self.page.url})")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def visit(self, path: str):
        response = self.page.goto(path)
        assert response is not None and response.status == 200, (path, response)
        self.page.wait_for_load_state("networkidle")
        return self.page

    def chart(self, selector: str = "canvas[data-chart]") -> dict:
        """The Chart.js instance on the canvas, and how much of the canvas is drawn."""
        self.page.wait_for_function(
            "s => { const c = document.querySelector(s); return c && Chart.getChart(c); }",
            arg=selector,
        )
        return self.page.evaluate(
            """s => {
                const canvas = document.querySelector(s);
                const chart = Chart.getChart(canvas);
                const ctx = canvas.getContext("2d");
                const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
                let drawn = 0;
                for (let i = 3; i < px.length; i += 4) { if (px[i] > 0) drawn++; }
                return {
                    type: chart.config.type,
                    legend: chart.legend ? chart.legend.legendItems.map(i => i.text) : [],
                    datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data})),
                    labels: chart.data.labels,
                    drawn: drawn / (canvas.width * canvas.height),
                };
            }""",
            selector,
        )

    def close(self) -> None:
        self.context.close()


def _screenshot(page, name: str) -> None:
    if os.environ.get("KEYMETER_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_the_overview_chart_is_drawn_from_the_rollups(demo_site):
    today = timezone.localdate()
    expected = DailyUsage.objects.filter(day__gt=today - timedelta(days=30)).aggregate(
        s=Sum("cost_usd"))["s"]  # fmt: skip
    names = sorted(Project.objects.values_list("name", flat=True))
    with _browser() as browser:
        s = Session(browser, demo_site, demo.ADMIN_EMAIL)
        s.visit("/overview/")
        chart = s.chart("canvas[data-chart='stacked-spend']")
        s.close()
    assert sorted(chart["legend"]) == names  # one legend entry per project
    assert sorted(d["label"] for d in chart["datasets"]) == names
    assert chart["drawn"] > 0.05  # bars, axes and legend: far from a blank canvas
    assert len(chart["labels"]) == 30 and chart["labels"][-1] == today.isoformat()
    drawn_total = sum(Decimal(str(v)) for d in chart["datasets"] for v in d["data"] if v)
    assert abs(drawn_total - expected) < Decimal("0.01")
    assert s.problems == []


def test_an_admin_sets_a_budget_and_a_viewer_cannot(demo_site):
    with _browser() as browser:
        admin = Session(browser, demo_site, demo.ADMIN_EMAIL)
        page = admin.visit("/projects/docs-search/budget/")
        form = page.locator("#budget-form form")
        form.get_by_label("Monthly limit (USD)").fill("123.45")
        form.get_by_role("button", name="Save budget").click()
        page.wait_for_load_state("networkidle")
        assert page.get_by_text("Budget saved").is_visible()
        assert page.get_by_text("$123.45").first.is_visible()
        admin.close()

        viewer = Session(browser, demo_site, demo.VIEWER_EMAIL)
        page = viewer.visit("/projects/docs-search/budget/")
        assert page.get_by_text("$123.45").first.is_visible()  # read-only, but visible
        assert page.get_by_text("Only admins change it").is_visible()
        assert page.locator("#budget-form").count() == 0
        assert page.get_by_role("button", name="Save budget").count() == 0
        # A forged POST with a valid CSRF token is refused too.
        status = page.evaluate(
            """async () => {
                const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
                const body = new URLSearchParams({csrfmiddlewaretoken: token,
                    monthly_limit_usd: "1.00", thresholds: "80, 100", notify_admins: "on"});
                const r = await fetch("/projects/docs-search/budget/", {method: "POST", body});
                return r.status;
            }"""
        )
        viewer.problems = [p for p in viewer.problems if "403" not in p]  # the forged POST
        viewer.close()
    assert status == 403
    budget = Budget.objects.get(project__slug="docs-search", environment__isnull=True)
    assert budget.monthly_limit_usd == Decimal("123.45")
    assert admin.problems == [] and viewer.problems == []


def test_a_new_key_shows_only_its_last_four_characters(demo_site):
    with _browser() as browser:
        s = Session(browser, demo_site, demo.ADMIN_EMAIL)
        page = s.visit("/projects/support-bot/")
        page.locator("form[action='/projects/support-bot/environments/']").get_by_label(
            "Environment name").fill("batch")  # fmt: skip
        page.get_by_role("button", name="Add environment").click()
        page.wait_for_load_state("networkidle")
        page.locator("summary", has_text="Add key").click()
        form = page.locator("form[action='/projects/support-bot/keys/']")
        form.get_by_label("Environment").select_option(label="batch")
        form.get_by_label("Secret key").fill(SECRET)
        form.get_by_role("button", name="Add key").click()
        page.wait_for_load_state("networkidle")
        row = page.locator("tr", has=page.locator("text=batch")).filter(has_text="active")
        shown = row.first.inner_text()
        html = page.content()
        page = s.visit("/overview/")
        html += page.content()
        s.close()
    assert "sk-proj-…W9xZ" in shown
    assert SECRET not in html and SECRET[8:-4] not in html
    key = ProviderKey.objects.get(environment__name="batch", project__slug="support-bot")
    assert (key.prefix, key.last4) == ("sk-proj-", "W9xZ")
    assert s.problems == []


def test_csv_export_downloads_the_rows_shown(demo_site):
    with _browser() as browser:
        s = Session(browser, demo_site, demo.ADMIN_EMAIL)
        page = s.visit("/explore/?project=shop-assistant&group_by=model")
        shown = page.eval_on_selector_all(
            "#explorer-table tbody tr",
            "rows => rows.map(r => [...r.querySelectorAll('th, td')].map(c => c.innerText.trim()))",
        )
        with page.expect_download() as info:
            page.get_by_role("link", name="Download CSV").click()
        download = info.value
        body = Path(download.path()).read_text(encoding="utf-8")
        name = download.suggested_filename
        s.close()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][:3] == ["model", "calls", "errors"]
    assert name.startswith("keymeter-usage-") and name.endswith("-by-model.csv")
    assert len(shown) == len(rows) - 1 >= 3
    for table_row, csv_row in zip(shown, rows[1:], strict=True):
        assert table_row[0] == csv_row[0]  # model
        # calls, errors and the token columns: the same numbers, the table with separators
        assert [c.replace(",", "") for c in table_row[1:7]] == csv_row[1:7]
    assert s.problems == []


def test_switching_to_chinese_translates_the_page(demo_site):
    with _browser() as browser:
        s = Session(browser, demo_site, demo.MEMBER_EMAIL)
        page = s.visit("/overview/")
        assert page.locator("h1").inner_text() == "Overview"
        page.get_by_role("button", name="中文").click()
        page.wait_for_url(re.compile(r".*/overview/$"))
        page.wait_for_load_state("networkidle")
        lang = page.evaluate("document.documentElement.lang")
        heading = page.locator("h1").inner_text()
        nav = page.locator("nav.nav").inner_text()
        body = page.locator("main").inner_text()
        s.close()
    assert lang == "zh-hans"
    assert heading == "概览"
    assert "项目" in nav and "Projects" not in nav
    assert "This month" not in body and "本月" in body
    assert User.objects.get(email=demo.MEMBER_EMAIL).language == "zh-hans"  # remembered
    assert s.problems == []


ADMIN_PAGES = [
    ("/overview/", "overview"),
    ("/projects/", None),
    ("/projects/shop-assistant/", "project-page"),
    ("/projects/shop-assistant/budget/", "budget"),
    ("/projects/shop-assistant/alerts/", None),
    ("/projects/shop-assistant/keys/tools/", None),
    ("/projects/shop-assistant/members/", None),
    ("/projects/shop-assistant/audit/", None),
    ("/explore/", "explorer"),
    ("/explore/calls/?project=support-bot", None),
    ("/prices/", "prices"),
    ("/calculator/?model=gpt-4o-mini&requests_per_day=1000&input_tokens=100&output_tokens=300",
     "calculator"),
    ("/accounts/tokens/", None),
]  # fmt: skip
VIEWER_PAGES = ["/overview/", "/projects/support-bot/", "/projects/support-bot/budget/",
                "/explore/", "/prices/"]  # fmt: skip


def test_no_page_logs_a_console_error(demo_site):
    with _browser() as browser:
        admin = Session(browser, demo_site, demo.ADMIN_EMAIL)
        for path, shot in ADMIN_PAGES:
            page = admin.visit(path)
            if shot:
                _screenshot(page, shot)
        page = admin.visit("/overview/")
        page.get_by_role("button", name="中文").click()
        page.wait_for_load_state("networkidle")
        _screenshot(page, "overview-zh")
        for path, _shot in ADMIN_PAGES[:4]:
            admin.visit(path)
        admin.close()

        viewer = Session(browser, demo_site, demo.VIEWER_EMAIL)
        for path in VIEWER_PAGES:
            viewer.visit(path)
        viewer.close()

        anonymous = browser.new_context(base_url=demo_site).new_page()
        errors: list[str] = []
        anonymous.on("console", lambda m: m.type == "error" and errors.append(m.text))
        for path in ("/accounts/login/", "/accounts/password/reset/"):
            anonymous.goto(path)
    assert admin.problems == []
    assert viewer.problems == []
    assert errors == []
