"""Chart and table data from the rollups, money formatting, and the project page's charts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from accounts.keys import add_provider_key
from accounts.models import ProviderKey
from dashboard import charts
from dashboard.templatetags.money import format_usd
from tests.dashboard.usage_rows import add_usage
from usage.budgets import set_budget
from usage.models import Budget, HourlyUsage

NOW = datetime(2026, 3, 20, 12, 30, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def chart(html: str, element_id: str) -> dict:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    assert found, f"no chart data {element_id}"
    return json.loads(found.group(1))


# Money


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (Decimal("0.195"), "$0.195"), (Decimal("5.85"), "$5.85"), (Decimal("0"), "$0.00"),
        (Decimal("1234.567"), "$1,234.57"), (Decimal("0.5"), "$0.50"),
        (Decimal("0.000266"), "$0.0003"), (Decimal("0.00000001"), "< $0.0001"),
        (Decimal("-2.5"), "-$2.50"), (None, "unpriced"),
    ],
)  # fmt: skip
def test_money_keeps_its_currency_and_sub_cent_precision(amount, shown):
    assert format_usd(amount) == shown


def test_money_follows_the_language(db):
    with translation.override("zh-hans"):
        assert format_usd(Decimal("1234.5")) == "$1,234.50"
        assert format_usd(None) != "$0.00"


# Chart data


def test_spend_by_project_sums_decimals_exactly(alpha, beta):
    add_usage(alpha, TODAY, cost="0.0000000001")
    add_usage(alpha, TODAY, cost="0.1949999999", environment="dev")
    add_usage(alpha, TODAY - timedelta(days=2), cost="1.10", model="gpt-4o")
    add_usage(beta, TODAY - timedelta(days=1), cost="3.00")
    data = charts.spend_by_project([alpha, beta], TODAY - timedelta(days=2), TODAY)
    assert data["labels"] == [(TODAY - timedelta(days=i)).isoformat() for i in (2, 1, 0)]
    alpha_row, beta_row = data["datasets"]
    assert alpha_row["label"] == "Alpha" and beta_row["label"] == "Beta"
    assert [Decimal(v) for v in alpha_row["data"]] == [Decimal("1.10"), 0, Decimal("0.195")]
    assert [Decimal(v) for v in beta_row["data"]] == [0, Decimal("3.00"), 0]


def test_spend_by_environment_has_one_dataset_per_environment(alpha):
    add_usage(alpha, TODAY, cost="2.00", environment="staging")
    add_usage(alpha, TODAY, cost="0.25", environment="staging", model="gpt-4o")
    data = charts.spend_by_environment(alpha, TODAY - timedelta(days=29), TODAY)
    sets = {d["label"]: [Decimal(v) for v in d["data"]] for d in data["datasets"]}
    assert set(sets) == {"dev", "production", "staging"}
    assert sets["staging"][-1] == Decimal("2.25") and sum(sets["production"]) == 0


def test_models_table_sums_calls_tokens_and_cost(alpha):
    add_usage(alpha, TODAY, model="o3-mini", calls=3, input_tokens=30, cached_input_tokens=10,
              output_tokens=90, reasoning_tokens=60, cost="0.0012", errors=1)  # fmt: skip
    add_usage(alpha, TODAY - timedelta(days=1), model="o3-mini", calls=2, input_tokens=20,
              output_tokens=40, cost="0.0008", environment="dev")  # fmt: skip
    add_usage(alpha, TODAY, model="custom", calls=4, cost="0", unpriced_calls=4)
    first = TODAY - timedelta(days=29)
    rows = {r["model"]: r for r in charts.top_models([alpha.pk], first, TODAY, n=None)}
    o3 = rows["o3-mini"]
    assert (o3["calls"], o3["errors"], o3["input_tokens"], o3["cached_input_tokens"]) == (
        5, 1, 50, 10
    )  # fmt: skip
    assert (o3["output_tokens"], o3["reasoning_tokens"], o3["cost"]) == (130, 60, Decimal("0.002"))
    assert rows["custom"]["unpriced_calls"] == 4


def test_budget_status_uses_the_budget_rules(alpha, alice):
    env = alpha.environments.get(name="staging")
    for day in range(1, 11):
        add_usage(alpha, TODAY.replace(day=day), cost="9.00")
        add_usage(alpha, TODAY.replace(day=day), cost="1.00", environment="staging")
    add_usage(alpha, TODAY.replace(month=2, day=27), cost="500")  # last month: not counted
    set_budget(alpha, monthly_limit_usd=200, by=alice)
    set_budget(alpha, environment=env, monthly_limit_usd=8, by=alice)
    wide, staging = charts.budget_statuses([alpha.pk])
    assert wide.budget.environment_id is None
    assert wide.spend == Decimal("100.00") == wide.budget.spend_this_period()
    assert wide.forecast == wide.budget.forecast()
    assert wide.percent == Decimal("50.0") and wide.level == "ok"
    assert staging.spend == Decimal("10.00") and staging.level == "over"
    assert staging.forecast == Budget.objects.get(environment=env).forecast()
    gauge = staging.chart()
    assert [Decimal(p) for p in gauge["parts"]][0] == Decimal("10")


def test_health_per_hour_from_hourly_rollups(alpha):
    env = alpha.environments.get(name="production")
    hour = NOW.replace(minute=0) - timedelta(hours=2)
    for model, calls, errors, total, peak in (("a", 10, 1, 5000, 900), ("b", 30, 0, 9000, 2000)):
        HourlyUsage.objects.create(project=alpha, environment=env, model=model, hour=hour,
                                   calls=calls, errors=errors, latency_ms_sum=total,
                                   latency_ms_max=peak)  # fmt: skip
    data = charts.health(alpha, hours=48)
    i = data["chart"]["labels"].index(hour.isoformat())
    assert len(data["chart"]["labels"]) == 48 and i == 45
    assert data["chart"]["calls"][i] == 40 and data["chart"]["errors"][i] == 1
    assert data["chart"]["latency_avg"][i] == 350 and data["chart"]["latency_max"][i] == 2000
    assert data["chart"]["latency_avg"][i - 1] is None
    assert data["totals"]["error_rate"] == Decimal("2.5")
    assert [m["model"] for m in data["models"]] == ["a", "b"]


# The project page


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_each_role_sees_the_project_charts(client, alpha, who, request):
    add_usage(alpha, TODAY, cost="0.195", model="gpt-4o-mini", environment="staging")
    add_usage(alpha, TODAY, model="custom", cost="0", unpriced_calls=10)
    client.force_login(request.getfixturevalue(who))
    html = client.get("/projects/alpha/").content.decode()
    data = chart(html, "env-chart-data")
    staging = next(d for d in data["datasets"] if d["label"] == "staging")
    assert Decimal(staging["data"][-1]) == Decimal("0.195")
    assert "$0.195" in html
    models = html[html.index("Models, last 30 days") :]
    row = models[models.index("custom<") : models.index("</tr>", models.index("custom<"))]
    assert "unpriced" in row and "$0" not in row
    assert 'data-chart="health"' in html


def test_a_non_member_gets_a_404(client, alpha, dave):
    add_usage(alpha, TODAY, cost="1.00")
    client.force_login(dave)
    assert client.get("/projects/alpha/").status_code == 404


def test_the_project_page_shows_a_budget_gauge_with_forecast(client, alpha, alice, charlie):
    for day in range(14, 20):
        add_usage(alpha, TODAY.replace(day=day), cost="15.00")
    set_budget(alpha, monthly_limit_usd=100, by=alice)
    client.force_login(charlie)
    html = client.get("/projects/alpha/").content.decode()
    gauge = chart(html, "gauge-0")
    forecast = Budget.objects.get(project=alpha).forecast()
    assert Decimal(gauge["spend"]) == Decimal("90") and Decimal(gauge["forecast"]) == forecast
    assert gauge["level"] == "warning"
    assert f"Forecast for the month: {format_usd(forecast)}" in html and "over budget" in html


def test_the_keys_table_shows_stage_and_flags(client, alpha, alice, bob):
    env = alpha.environments.get(name="production")
    key = add_provider_key(env, "sk-proj-" + "s" * 40, name="old",
                           issued_at=NOW - timedelta(days=80), by=alice)  # fmt: skip
    ProviderKey.objects.filter(pk=key.pk).update(invalid_at=NOW)
    client.force_login(bob)
    html = client.get("/projects/alpha/").content.decode()
    keys = html[html.index("Provider keys") :]
    assert "due for rotation" in keys and "invalid" in keys
    assert key.masked in keys and "s" * 40 not in html


def test_a_project_without_calls_shows_the_sdk_snippet(client, alpha, bob):
    client.force_login(bob)
    html = client.get("/projects/alpha/").content.decode()
    assert "No calls recorded yet" in html and "/v1" in html and "data-chart" not in html


def _queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get("/projects/alpha/?days=90").status_code == 200
    return len(ctx.captured_queries)


def test_the_project_page_query_count_does_not_grow_with_days_or_models(
    client, alpha, alice, django_assert_max_num_queries
):
    set_budget(alpha, monthly_limit_usd=100, by=alice)
    add_provider_key(alpha.environments.get(name="production"), "sk-proj-" + "c" * 40, by=alice)
    add_usage(alpha, TODAY, cost="1.00")
    client.force_login(alice)
    few = _queries(client)
    for day in range(1, 80):
        for model in ("gpt-4o", "gpt-4o-mini", "o3-mini", "embed", "custom"):
            add_usage(alpha, TODAY - timedelta(days=day), model=model, environment="staging",
                      hour=day % 24)  # fmt: skip
    assert _queries(client) == few
    with django_assert_max_num_queries(25):
        client.get("/projects/alpha/?days=90")
