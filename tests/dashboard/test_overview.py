"""The overview: landing page, what each role sees, budgets, alerts, keys, unpriced."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.keys import add_provider_key
from accounts.models import ProviderKey
from dashboard.templatetags.money import format_usd
from tests.conftest import PASSWORD
from tests.dashboard.usage_rows import add_usage
from usage.budgets import set_budget
from usage.models import Budget, BudgetAlert, HealthAlert

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def page(client, user, url="/overview/"):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def chart(html: str, element_id: str) -> dict:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    assert found, f"no chart data {element_id}"
    return json.loads(found.group(1))


def test_it_is_the_landing_page_after_login(client, alice):
    r = client.post("/accounts/login/", {"email": alice.email, "password": PASSWORD})
    assert r.url == "/overview/"
    assert client.get("/").url == "/overview/"


def test_it_needs_a_login(client):
    r = client.get("/overview/")
    assert r.status_code == 302 and r.url.startswith("/accounts/login/")


def test_a_user_without_projects_sees_how_to_start(client, dave):
    html = page(client, dave)
    assert "No projects yet" in html
    assert "/v1" in html and 'data-copy="sdk-python"' in html
    assert "data-chart" not in html


def test_a_project_without_calls_shows_the_sdk_snippet(client, alpha, bob):
    html = page(client, bob)
    assert "No calls recorded yet" in html
    assert 'base_url="http://' in html and "api_key=" in html
    assert 'href="/projects/alpha/"' in html


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_each_role_sees_the_spend_of_its_project(client, alpha, who, request):
    add_usage(alpha, TODAY, cost="12.50")
    html = page(client, request.getfixturevalue(who))
    assert "Alpha" in html
    assert "$12.50" in html
    data = chart(html, "spend-chart-data")
    assert [d["label"] for d in data["datasets"]] == ["Alpha"]


def test_a_non_member_sees_nothing_of_other_projects(client, alpha, beta, dave):
    add_usage(alpha, TODAY, cost="12.50", model="gpt-4o")
    add_usage(beta, TODAY, cost="3.25", model="gpt-4.1-mini")
    html = page(client, dave)
    assert "Alpha" not in html and "12.50" not in html and "gpt-4o<" not in html
    assert "$3.25" in html
    assert [d["label"] for d in chart(html, "spend-chart-data")["datasets"]] == ["Beta"]


def test_budget_bars_are_coloured_at_80_and_100_percent(client, alpha, beta, alice, dave):
    for day in range(1, 20):  # three days with data make a forecast
        add_usage(alpha, TODAY.replace(day=day), cost="4.50")  # 85.50 of 100
        add_usage(beta, TODAY.replace(day=day), cost="1.00")  # 19.00 of 10
    set_budget(alpha, monthly_limit_usd=100, by=alice)
    set_budget(beta, monthly_limit_usd=10, by=dave)
    beta.memberships.create(user=alice, role="viewer")
    html = page(client, alice)
    assert "$85.50" in html and "85.5 %" in html and "spend-meter--warning" in html
    assert "$19.00" in html and "190.0 %" in html and "spend-meter--over" in html
    assert 'low="80" high="99.99"' in html
    # The forecast is usage.budgets' own (85.50 × 31 days / 19.5 days elapsed).
    forecast = Budget.objects.get(project=alpha).forecast()
    assert forecast == Decimal("135.92")
    assert f"Forecast for the month: {format_usd(forecast)}" in html


def test_a_project_without_budget_shows_spend_and_forecast(client, alpha, bob):
    for day in range(15, 20):
        add_usage(alpha, TODAY.replace(day=day), cost="2.00")
    html = page(client, bob)
    assert "No budget set." in html
    assert "$10.00" in html and "Forecast for the month:" in html


def test_daily_spend_covers_30_or_90_days(client, alpha, bob):
    add_usage(alpha, TODAY - timedelta(days=60), cost="7.00")
    add_usage(alpha, TODAY, cost="1.00")
    data = chart(page(client, bob), "spend-chart-data")
    assert len(data["labels"]) == 30 and data["labels"][-1] == TODAY.isoformat()
    assert sum(Decimal(v) for v in data["datasets"][0]["data"]) == Decimal("1.00")
    data = chart(page(client, bob, "/overview/?days=90"), "spend-chart-data")
    assert len(data["labels"]) == 90
    assert sum(Decimal(v) for v in data["datasets"][0]["data"]) == Decimal("8.00")
    # Anything else is the default range, not an error.
    assert len(chart(page(client, bob, "/overview/?days=7x"), "spend-chart-data")["labels"]) == 30


def test_unpriced_models_are_warned_about_and_never_shown_as_zero(client, alpha, bob):
    add_usage(alpha, TODAY, model="my-finetune", cost="0", calls=7, unpriced_calls=7)
    add_usage(alpha, TODAY, model="gpt-4o-mini", cost="0.195")
    html = page(client, bob)
    assert "Some calls have no price" in html
    assert "my-finetune" in html and "7 calls" in html
    row = re.search(r"my-finetune</span></td>(.*?)</tr>", html, re.S).group(1)
    assert "unpriced" in row and "$0" not in row
    assert "$0.195" in html


def test_top_models_are_ordered_by_cost(client, alpha, bob):
    add_usage(alpha, TODAY, model="gpt-4o-mini", cost="1.00", calls=500)
    add_usage(alpha, TODAY, model="gpt-4o", cost="9.00", calls=20)
    html = page(client, bob)
    section = html[html.index("Top models") :]
    assert section.index("gpt-4o<") < section.index("gpt-4o-mini<")


def test_recent_alerts_show_budget_and_health_alerts(client, alpha, alice, charlie):
    for day in range(1, 20):
        add_usage(alpha, TODAY.replace(day=day), cost="5.00")
    set_budget(alpha, monthly_limit_usd=100, by=alice)  # 95 %: the 80 % alert fires
    HealthAlert.objects.create(project=alpha, kind="unpriced_model", episode_key="x-model",
                               detail={"model": "x-model"})  # fmt: skip
    assert BudgetAlert.objects.filter(budget__project=alpha, threshold=80).exists()
    html = page(client, charlie)
    assert "80 % of the monthly budget reached" in html
    assert "Calls to x-model have no price" in html


def test_keys_needing_attention_are_listed_with_their_reasons(client, alpha, alice, bob):
    prod = alpha.environments.get(name="production")
    dev = alpha.environments.get(name="dev")
    add_provider_key(prod, "sk-proj-" + "o" * 40, name="old one",
                     issued_at=NOW - timedelta(days=95), by=alice)  # fmt: skip
    leaked = add_provider_key(dev, "sk-proj-" + "l" * 40, name="leaky", by=alice)
    add_provider_key(alpha.environments.get(name="staging"), "sk-proj-" + "f" * 40,
                     name="fresh", by=alice)  # fmt: skip
    ProviderKey.objects.filter(pk=leaked.pk).update(leaked_at=NOW)
    html = page(client, bob)
    section = html[html.index("Keys needing attention") :]
    assert "old one" in section and "overdue for rotation" in section
    assert "leaky" in section and "leaked" in section
    assert "fresh" not in section
    assert "o" * 40 not in html and "l" * 40 not in html


def _queries(client, user) -> int:
    client.force_login(user)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/overview/?days=90").status_code == 200
    return len(ctx.captured_queries)


def test_the_query_count_does_not_grow_with_days_or_models(
    client, alpha, beta, alice, dave, django_assert_max_num_queries
):
    beta.memberships.create(user=alice, role="member")
    set_budget(alpha, monthly_limit_usd=100, by=alice)
    add_provider_key(alpha.environments.get(name="production"), "sk-proj-" + "q" * 40, by=alice)
    add_usage(alpha, TODAY, cost="1.00")
    few = _queries(client, alice)
    models = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini", "embed", "custom"]
    for day in range(1, 80):
        for model in models:
            add_usage(beta, TODAY - timedelta(days=day), model=model, cost="0.10")
            add_usage(alpha, TODAY - timedelta(days=day), model=model, environment="dev")
    assert _queries(client, alice) == few
    client.force_login(alice)
    with django_assert_max_num_queries(20):
        client.get("/overview/?days=90")
