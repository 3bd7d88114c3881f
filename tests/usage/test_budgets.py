"""Budget rules on the real database and Redis: periods in TIME_ZONE, spend from the
rollups, thresholds once per period, forecast, limits raised and lowered, the hard
limit the gateway reads, and the checks that run after flushes and on the beat."""

from __future__ import annotations

import io
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from dashboard.redis_client import get_redis
from tests.support.smtp import celery_worker, smtp_server, wait_until
from tests.usage.budget_helpers import add_test_price, spend
from usage import budgets, pipeline, tasks
from usage.models import Budget, BudgetAlert

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def production(db, alpha):
    add_test_price()
    return alpha.environments.get(name="production")


def make_budget(project, limit="100", thresholds=(80, 100), **fields) -> Budget:
    return Budget.objects.create(project=project, monthly_limit_usd=Decimal(limit),
                                 thresholds=list(thresholds), **fields)  # fmt: skip


def test_the_period_is_the_calendar_month_in_the_time_zone(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    just_after_midnight = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)  # April 1, 00:30 there
    assert budgets.period_start(just_after_midnight) == date(2026, 4, 1)
    assert budgets.period_end(just_after_midnight) == date(2026, 4, 30)
    assert budgets.period_end(datetime(2028, 2, 10, tzinfo=UTC)) == date(2028, 2, 29)


def test_it_lists_the_crossed_thresholds():
    budget = Budget(monthly_limit_usd=Decimal("100.00"), thresholds=[50, 80, 100])
    assert budget.crossed_thresholds(Decimal("79.9999999999")) == [50]
    assert budget.crossed_thresholds(Decimal("80")) == [50, 80]
    assert budget.crossed_thresholds(Decimal("250")) == [50, 80, 100]


def test_a_new_month_starts_at_zero_in_a_non_utc_time_zone(production, alpha, settings):
    """No reset job: March's spend is simply not in April's days; March's 80 % alert
    does not stop April's."""
    settings.TIME_ZONE = "Asia/Shanghai"
    budget = make_budget(alpha)
    spend(production, "85", datetime(2026, 3, 31, 10, 0, tzinfo=SHANGHAI))
    with time_machine.travel(datetime(2026, 3, 31, 23, 0, tzinfo=SHANGHAI), tick=False):
        assert [c.line() for c in budgets.check_budgets()] == [
            "alpha: $85.00 of $100.00 (85.0%); alerted: 80%"
        ]
    # 00:30 on April 1 in Shanghai is still March 31 in UTC: it is April's spend.
    spend(production, "10", datetime(2026, 4, 1, 0, 30, tzinfo=SHANGHAI))
    with time_machine.travel(datetime(2026, 4, 1, 1, 0, tzinfo=SHANGHAI), tick=False):
        assert budget.spend_this_period() == Decimal("10")
        assert budgets.check_budgets()[0].alerts == []
    spend(production, "75", datetime(2026, 4, 1, 1, 30, tzinfo=SHANGHAI))
    with time_machine.travel(datetime(2026, 4, 1, 2, 0, tzinfo=SHANGHAI), tick=False):
        assert [a.threshold for a in budgets.check_budgets()[0].alerts] == [80]
        summary = budgets.budget_summary(budget)
    assert (summary["period_start"], summary["spend_this_period"]) == ("2026-04-01", "85.00")
    alerts = BudgetAlert.objects.order_by("period")
    assert [(a.period, a.threshold, a.spend_usd) for a in alerts] == [
        (date(2026, 3, 1), 80, Decimal("85")), (date(2026, 4, 1), 80, Decimal("85")),
    ]  # fmt: skip


def test_a_threshold_alerts_once_however_often_it_is_checked(
    production, alpha, django_capture_on_commit_callbacks
):
    make_budget(alpha)
    spend(production, "85", timezone.now())
    with django_capture_on_commit_callbacks() as queued:
        for _ in range(5):
            budgets.check_budgets([alpha.pk])
    assert BudgetAlert.objects.count() == 1
    assert len(queued) == 1  # one email task, from the evaluation that created the row


def test_raising_the_limit_does_not_realert_and_lowering_it_alerts_at_once(
    production, alpha, alice, django_capture_on_commit_callbacks
):
    def set_limit(limit: str) -> int:
        """Set the limit; return how many alert emails that queued."""
        with django_capture_on_commit_callbacks() as queued:
            budgets.set_budget(alpha, monthly_limit_usd=limit, thresholds=[80, 100],
                               hard_limit=False, extra_recipients=[], by=alice)  # fmt: skip
        return len(queued)

    spend(production, "85", timezone.now())
    assert set_limit("100") == 1  # 80 %, evaluated as the budget was saved
    assert set_limit("200") == 0
    spend(production, "85", timezone.now())  # $170 = 85 % of the raised limit
    with django_capture_on_commit_callbacks() as queued:
        budgets.check_budgets()
    assert queued == []  # 80 % was already sent this month
    assert set_limit("150") == 1  # $170 is over the lowered limit: 100 % at once
    alerts = BudgetAlert.objects.order_by("threshold")
    assert [(a.threshold, a.limit_usd) for a in alerts] == [(80, 100), (100, 150)]


def test_the_forecast_alerts_once_when_the_month_will_overshoot(production, alpha, settings):
    settings.TIME_ZONE = "UTC"
    budget = make_budget(alpha, limit="200")
    for day in range(1, 11):  # $10 a day, April 1–10
        spend(production, "10", datetime(2026, 4, day, 8, tzinfo=UTC))
    now = datetime(2026, 4, 10, 12, tzinfo=UTC)  # 9.5 days in: $100 spent, 50 %
    # Linear: 100 / 9.5 × 30 = 315.79. Trailing 7 days (April 4–10, 6.5 days elapsed):
    # 70 / 6.5 × 30 = 323.08, higher, so that is the forecast.
    assert budget.forecast(now) == Decimal("323.08")
    created = budgets.evaluate_budget(budget, now)
    assert [(a.kind, a.threshold, a.forecast_usd) for a in created] == [
        ("forecast", 0, Decimal("323.08"))
    ]
    assert budgets.evaluate_budget(budget, now + timedelta(hours=6)) == []
    summary = budgets.budget_summary(budget, now)
    assert (summary["percent"], summary["forecast_usd"]) == ("50.0", "323.08")


def test_there_is_no_forecast_before_three_days_of_data(production, alpha, settings):
    settings.TIME_ZONE = "UTC"
    budget = make_budget(alpha, limit="10")
    spend(production, "1", datetime(2026, 4, 1, 8, tzinfo=UTC))
    spend(production, "1", datetime(2026, 4, 2, 8, tzinfo=UTC))
    now = datetime(2026, 4, 2, 9, tzinfo=UTC)
    assert budget.forecast(now) is None
    assert budgets.evaluate_budget(budget, now) == []
    spend(production, "1", datetime(2026, 4, 3, 8, tzinfo=UTC))
    assert budget.forecast(datetime(2026, 4, 3, 9, tzinfo=UTC)) is not None


def test_an_environment_budget_counts_only_its_environment(production, alpha):
    staging = alpha.environments.get(name="staging")
    spend(production, "50", timezone.now())
    spend(staging, "30", timezone.now())
    assert make_budget(alpha, environment=staging).spend_this_period() == Decimal("30")
    assert make_budget(alpha).spend_this_period() == Decimal("80")


def test_the_hard_limit_is_published_for_the_gateway(production, alpha, alice):
    key = f"km:budget:{alpha.pk}"
    r = get_redis()
    budget = budgets.set_budget(alpha, monthly_limit_usd="100", thresholds=[80],
                                hard_limit=True, extra_recipients=[], by=alice)  # fmt: skip
    assert r.get(key) == b"1000000000000"  # $100 in units of 1e-10 USD
    budgets.set_budget(alpha, monthly_limit_usd="250.50", thresholds=[80], hard_limit=True,
                       extra_recipients=[], by=alice)  # fmt: skip
    assert r.get(key) == b"2505000000000"  # a raised limit is visible at once
    budgets.set_budget(alpha, monthly_limit_usd="250.50", thresholds=[80], hard_limit=False,
                       extra_recipients=[], by=alice)  # fmt: skip
    assert r.get(key) == b"0"
    r.delete(key)
    assert budgets.run_checks().published == 1  # the beat heals a lost key
    assert r.get(key) == b"0"
    budget.refresh_from_db()
    budgets.remove_budget(budget, by=alice)
    assert r.get(key) is None


def test_it_rejects_bad_budgets(production, alpha, beta, alice):
    staging = alpha.environments.get(name="staging")
    cases = [
        ({"monthly_limit_usd": "0"}, "more than 0"),
        ({"monthly_limit_usd": "-5"}, "more than 0"),
        ({"monthly_limit_usd": "10.001"}, "2 decimal places"),
        ({"monthly_limit_usd": "lots"}, "an amount in USD"),
        ({"monthly_limit_usd": "NaN"}, "more than 0"),
        ({"thresholds": []}, "list of percentages"),
        ({"thresholds": [0]}, "from 1 to 1000"),
        ({"thresholds": [80, 1001]}, "from 1 to 1000"),
        ({"thresholds": [80.5]}, "whole percentage"),
        ({"extra_recipients": ["not-an-address"]}, "not an email address"),
        ({"webhook_url": "ftp://example.org/x"}, "http(s) URL"),
        ({"environment": staging, "hard_limit": True}, "whole project"),
        ({"environment": beta.environments.first()}, "another project"),
    ]
    for change, message in cases:
        values = {"monthly_limit_usd": "100", "thresholds": [80], "hard_limit": False,
                  "extra_recipients": [], **change}  # fmt: skip
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            budgets.set_budget(alpha, by=alice, **values)
    assert not Budget.objects.exists()


def test_thresholds_and_recipients_are_cleaned(production, alpha, alice):
    budget = budgets.set_budget(alpha, monthly_limit_usd=100, thresholds=[100, 50, 80, 50],
                                hard_limit=False,
                                extra_recipients=["Ops@Example.org", "ops@example.org"],
                                by=alice)  # fmt: skip
    assert budget.thresholds == [50, 80, 100]
    assert budget.extra_recipients == ["ops@example.org"]
    assert budget.monthly_limit_usd == Decimal("100.00")


def test_the_command_prints_what_it_checked_and_alerted(production, alpha):
    make_budget(alpha)
    spend(production, "85", timezone.now())
    out = io.StringIO()
    call_command("check_budgets", "--project", "alpha", stdout=out)
    assert out.getvalue() == "alpha: $85.00 of $100.00 (85.0%); alerted: 80%\n"
    out = io.StringIO()
    call_command("check_budgets", stdout=out)
    assert "alpha: $85.00 of $100.00 (85.0%); alerted: nothing new\n" in out.getvalue()
    with pytest.raises(CommandError, match="No such project: nope"):
        call_command("check_budgets", "--project", "nope")


@pytest.fixture
def live(transactional_db, alpha, settings):
    add_test_price()
    settings.ALERT_RETRY_BASE_SECONDS = 0.2
    return alpha.environments.get(name="production")


def test_two_evaluators_racing_create_one_alert_and_send_one_email(live, alpha, settings):
    budget = make_budget(alpha)
    spend(live, "85", timezone.now())
    results: list = []
    barrier = threading.Barrier(8)

    def evaluate():
        try:
            barrier.wait()
            results.append(budgets.evaluate_budget(Budget.objects.get(pk=budget.pk)))
        finally:
            connection.close()

    with smtp_server(settings) as smtp, celery_worker():
        threads = [threading.Thread(target=evaluate) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(smtp.wait_for(1)) == 1
        smtp.wait_for(2, timeout=2)

    assert len(results) == 8
    assert sum(len(created) for created in results) == 1
    assert BudgetAlert.objects.count() == 1
    assert [m["To"] for m in smtp.messages] == ["alice@example.org"]


def test_a_flush_checks_the_budgets_of_the_projects_it_touched(live, alpha, settings):
    """The beat's flush task → check_budgets task → alert row → email, all on a worker."""
    make_budget(alpha)
    spend(live, "70", timezone.now())
    with smtp_server(settings) as smtp, celery_worker():
        pipeline.enqueue(_record(live, "15"))
        result = tasks.flush_calls()
        assert result["projects"] == [alpha.pk]
        assert len(smtp.wait_for(1)) == 1
        assert wait_until(lambda: BudgetAlert.objects.filter(sent_at__isnull=False).exists())
    assert "has reached 80% of its budget" in smtp.messages[0]["Subject"]


def _record(environment, usd: str):
    from tests.usage.budget_helpers import PRICED_MODEL
    from usage.records import CallRecord

    return CallRecord(
        request_id=f"req_flush_{usd}", created_at=timezone.now().timestamp(),
        project_id=environment.project_id, environment_id=environment.pk,
        provider_key_id=None, gateway_token_id=None, endpoint="/v1/chat/completions",
        model=PRICED_MODEL, input_tokens=int(Decimal(usd) * 1_000_000), output_tokens=0,
    )  # fmt: skip
