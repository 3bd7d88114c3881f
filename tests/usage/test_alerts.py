"""Alert delivery on real services: a real Celery worker, a real SMTP server (aiosmtpd),
real Postgres/Redis. What a recipient notices: one email per alert, in their language,
even when SMTP was down for a while; never two."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from tests.support.servers import serve
from tests.support.smtp import celery_worker, html_body, smtp_server, text_body, wait_until
from tests.usage.budget_helpers import add_test_price, spend
from usage import alerts, budgets, health
from usage.models import BudgetAlert, HealthAlert, ModelPrice


@pytest.fixture
def fast_retries(settings):
    settings.ALERT_RETRY_BASE_SECONDS = 0.2
    settings.ALERT_RETRY_MAX_SECONDS = 0.5
    settings.SITE_URL = "https://keymeter.example.com"


@pytest.fixture
def production(transactional_db, alpha, fast_retries):
    add_test_price()
    return alpha.environments.get(name="production")


def test_a_threshold_crossing_reaches_the_inbox_through_a_real_worker(
    production, alpha, alice, settings
):
    spend(production, "85", timezone.now())
    with smtp_server(settings) as smtp, celery_worker():
        budgets.set_budget(alpha, monthly_limit_usd="100", thresholds=[80, 100],
                           hard_limit=False, extra_recipients=["finance@example.org"],
                           by=alice)  # fmt: skip
        messages = smtp.wait_for(2)
        assert wait_until(lambda: BudgetAlert.objects.filter(sent_at__isnull=False).exists())

    assert sorted(m["To"] for m in messages) == ["alice@example.org", "finance@example.org"]
    message = messages[0]
    assert message["Subject"].startswith("[keymeter] Alpha has reached 80% of its budget for")
    text = text_body(message)
    assert "Alpha has spent $85.00 of its $100.00 budget" in text
    assert "(85.0%)" in text
    assert "Environment: all environments" in text
    assert "budget-test-model: $85.00" in text
    assert "https://keymeter.example.com/projects/alpha/" in text
    assert "https://keymeter.example.com/projects/alpha/" in html_body(message)
    alert = BudgetAlert.objects.get()
    assert (alert.kind, alert.threshold, alert.attempts) == ("threshold", 80, 1)
    assert sorted(alert.delivered_to) == ["alice@example.org", "finance@example.org"]


def test_smtp_down_then_up_sends_exactly_one_email(production, alpha, alice, settings):
    spend(production, "90", timezone.now())
    with smtp_server(settings, running=False) as smtp, celery_worker():
        budgets.set_budget(alpha, monthly_limit_usd="100", thresholds=[80], hard_limit=False,
                           extra_recipients=[], by=alice)  # fmt: skip
        alert = BudgetAlert.objects.get()
        # The worker tries, fails (connection refused) and retries with backoff.
        assert wait_until(lambda: BudgetAlert.objects.get().attempts >= 2)
        failed = BudgetAlert.objects.get()
        assert failed.sent_at is None
        assert "ConnectionRefusedError" in failed.last_error

        smtp.start()
        assert len(smtp.wait_for(1)) == 1
        assert wait_until(lambda: BudgetAlert.objects.get().sent_at is not None)
        # A duplicated or redelivered task finds the row sent and does nothing.
        alerts.send_budget_alert.delay(alert.pk)
        alerts.send_budget_alert.delay(alert.pk)
        budgets.check_budgets()  # and so does any later evaluation
        smtp.wait_for(2, timeout=2)

    assert len(smtp.messages) == 1
    sent = BudgetAlert.objects.get()
    assert sent.attempts >= 3
    assert sent.delivered_to == ["alice@example.org"]


def test_a_zh_hans_admin_gets_the_email_in_chinese(production, alpha, alice, settings):
    alice.language = "zh-hans"
    alice.save()
    spend(production, "120", timezone.now())
    with smtp_server(settings) as smtp, celery_worker():
        budgets.set_budget(alpha, monthly_limit_usd="100", thresholds=[100], hard_limit=True,
                           extra_recipients=["ops@example.org"], by=alice)  # fmt: skip
        messages = smtp.wait_for(2)

    by_address = {m["To"]: m for m in messages}
    chinese = by_address["alice@example.org"]
    assert "已达到" in chinese["Subject"]
    assert "年" in chinese["Subject"] and "月" in chinese["Subject"]
    text = text_body(chinese)
    assert "已花费 $120.00" in text
    assert "硬性上限已开启" in text
    assert "所有环境" in text
    assert "打开项目" in html_body(chinese)
    english = by_address["ops@example.org"]
    assert "has reached 100% of its budget" in english["Subject"]
    assert "The hard limit is on" in text_body(english)


def test_nobody_is_emailed_twice_when_one_recipient_failed(production, alpha, alice, settings):
    """A retry after a partial send skips the addresses that already got theirs."""
    spend(production, "85", timezone.now())
    with smtp_server(settings) as smtp:
        budgets.set_budget(alpha, monthly_limit_usd="100", thresholds=[80], hard_limit=False,
                           extra_recipients=["finance@example.org"], by=alice)  # fmt: skip
        alert = BudgetAlert.objects.get()
        BudgetAlert.objects.filter(pk=alert.pk).update(delivered_to=["alice@example.org"])
        assert alerts.deliver_budget_alert(alert.pk) == 1
        assert alerts.deliver_budget_alert(alert.pk) == 0
    assert [m["To"] for m in smtp.messages] == ["finance@example.org"]


class Receiver:
    """A webhook receiver that fails `failures` times with 500, then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        status = 500 if len(self.bodies) <= self.failures else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_the_webhook_is_retried_and_delivered_once(production, alpha, alice, settings):
    receiver = Receiver(failures=1)
    spend(production, "85", timezone.now())
    with serve(receiver) as url, smtp_server(settings), celery_worker():
        hook = f"{url}/hooks/T000/B000/very-secret-token"
        budgets.set_budget(alpha, monthly_limit_usd="100", thresholds=[80], hard_limit=False,
                           extra_recipients=[], webhook_url=hook, by=alice)  # fmt: skip
        assert wait_until(lambda: BudgetAlert.objects.get().webhook_sent_at is not None)
        alert = BudgetAlert.objects.get()
        alerts.send_budget_webhook.delay(alert.pk)  # a duplicate: nothing more is posted
        wait_until(lambda: len(receiver.bodies) > 2, timeout=1)

    assert len(receiver.bodies) == 2  # one refused with 500, one accepted
    body = receiver.bodies[-1]
    assert body["event"] == "budget.threshold"
    assert (body["project"], body["threshold"], body["spend_usd"]) == ("alpha", 80, "85.00")
    assert body["text"].startswith("[keymeter] Alpha has reached 80%")
    alert.refresh_from_db()
    assert alert.webhook_attempts == 2
    assert alert.last_error == "webhook: HTTP 500"
    assert "secret-token" not in alert.last_error
    assert "secret-token" not in json.dumps(budgets.budget_summary(alert.budget))


def test_a_lost_send_task_is_queued_again_by_the_sweep(production, alpha, alice, settings):
    spend(production, "85", timezone.now())
    with smtp_server(settings) as smtp:
        # No worker: the task sits in the broker, as if lost with a dead worker.
        budgets.set_budget(alpha, monthly_limit_usd="100", thresholds=[80], hard_limit=False,
                           extra_recipients=[], by=alice)  # fmt: skip
        assert alerts.requeue_unsent() == 0  # not overdue yet
        later = timezone.now() + alerts.SWEEP_GRACE + timedelta(seconds=1)
        assert alerts.requeue_unsent(later) == 1
        with celery_worker():
            assert len(smtp.wait_for(1)) == 1
            smtp.wait_for(2, timeout=1)
    assert len(smtp.messages) == 1  # the original task and the re-queued one: one email


def _calls(environment, count, *, status=200, latency_ms=100, model=None):
    for _ in range(count):
        extra = {"model": model} if model else {}
        spend(environment, "0.01", timezone.now(), status_code=status, latency_ms=latency_ms,
              **extra)  # fmt: skip


def test_a_health_episode_alerts_once_and_a_new_one_alerts_again(
    production, alpha, alice, settings
):
    with smtp_server(settings) as smtp, celery_worker():
        _calls(production, 18)
        _calls(production, 2, status=500)  # 90 % success over 20 calls
        assert [a.kind for a in health.check_health()] == ["success_rate"]
        assert health.check_health() == []  # same episode: no new alert
        assert len(smtp.wait_for(1)) == 1

        _calls(production, 200)  # healthy again: the episode closes
        assert health.check_health() == []
        assert HealthAlert.objects.get().closed_at is not None

        _calls(production, 40, status=502)  # a new episode alerts again
        assert [a.kind for a in health.check_health()] == ["success_rate"]
        messages = smtp.wait_for(2)

    assert len(messages) == 2
    assert messages[0]["Subject"] == "[keymeter] Alpha: success rate below 95%"
    assert "90.0% of Alpha's 20 calls succeeded (2 failed)" in text_body(messages[0])
    assert HealthAlert.objects.count() == 2


def test_slow_calls_and_unpriced_models_alert(production, alpha):
    _calls(production, 18)
    _calls(production, 2, latency_ms=2500)  # 2 of 20 took over 2 s: the p95 is above it
    _calls(production, 1, model="brand-new-model")
    opened = health.check_health()
    assert sorted((a.kind, a.episode_key) for a in opened) == [
        ("latency", ""), ("unpriced_model", "brand-new-model"),
    ]  # fmt: skip
    assert opened[0].detail["calls"] == 21


def test_one_slow_call_in_twenty_is_within_the_p95(production, alpha):
    _calls(production, 19)
    _calls(production, 1, latency_ms=5000)
    assert health.check_health() == []


def test_an_unpriced_model_episode_closes_once_the_model_has_a_price(production, alpha):
    _calls(production, 1, model="brand-new-model")
    assert len(health.check_health()) == 1
    later = timezone.now() + timedelta(minutes=20)  # the unpriced call left the window
    assert health.check_health(now=later) == []
    assert HealthAlert.objects.get().closed_at is None  # still unpriced: stays open
    ModelPrice.objects.create(model="brand-new-model", input_per_1m=1, output_per_1m=1,
                              effective_from=timezone.now())  # fmt: skip
    assert health.check_health(now=later) == []
    assert HealthAlert.objects.get().closed_at == later


def test_few_calls_are_not_enough_to_judge(production, alpha):
    _calls(production, 19, status=500)
    assert health.check_health() == []


def test_the_forecast_email_says_what_the_month_will_cost(db, alpha, settings):
    settings.TIME_ZONE = "UTC"
    add_test_price()
    production = alpha.environments.get(name="production")
    budget = budgets.Budget.objects.create(project=alpha, monthly_limit_usd=200,
                                           thresholds=[80, 100])  # fmt: skip
    for day in range(1, 11):
        spend(production, "10", datetime(2026, 4, day, 8, tzinfo=UTC))
    [alert] = budgets.evaluate_budget(budget, datetime(2026, 4, 10, 12, tzinfo=UTC))
    with smtp_server(settings) as smtp:
        assert alerts.deliver_budget_alert(alert.pk) == 1
    [message] = smtp.messages
    assert message["Subject"] == (
        "[keymeter] Alpha is on track to exceed its budget for April 2026"
    )
    text = text_body(message)
    assert "Alpha will spend about $323.08 in April 2026, more than its monthly budget of " \
        "$200.00." in text  # fmt: skip
    assert "Forecast for the month: $323.08" in text
    assert "Spend so far: $100.00" in text
