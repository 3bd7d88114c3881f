"""Alert delivery: one email per recipient in their language, and an optional webhook.

Exactly once: an alert row exists once (see usage/budgets.py and usage/health.py);
its send task locks the row, returns if `sent_at` is set, skips recipients already
in `delivered_to`, and records attempts, the last error and the send time. A task
that is retried, duplicated or redelivered after a worker died therefore never
sends an address twice. SMTP failures retry with exponential backoff and jitter;
a beat sweep re-queues alerts whose retry was lost (broker down when queuing).
"""

from __future__ import annotations

import logging
import random
import smtplib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from celery import shared_task
from django.conf import settings
from django.core.mail import get_connection
from django.db import models, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from accounts.mail import render_email
from accounts.models import Project
from usage import budgets
from usage.models import BudgetAlert, HealthAlert
from usage.rollups import money_str

log = logging.getLogger(__name__)

RETRYABLE = (smtplib.SMTPException, OSError)  # refused, reset, timed out, 4xx/5xx replies
MAX_ATTEMPTS = 25  # with a 10-minute cap: about three and a half hours of outage
SWEEP_GRACE = timedelta(minutes=5)  # a retry this late was lost: queue it again


def retry_base() -> float:
    return float(getattr(settings, "ALERT_RETRY_BASE_SECONDS", 10.0))


def retry_cap() -> float:
    return float(getattr(settings, "ALERT_RETRY_MAX_SECONDS", 600.0))


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1, 2, …): exponential, capped, with jitter
    (half fixed, half random) so alerts queued together don't retry in lockstep."""
    ceiling = min(retry_cap(), retry_base() * 2 ** max(0, attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class SendFailed(Exception):
    def __init__(self, countdown: float, error: Exception) -> None:
        super().__init__(str(error))
        self.countdown = countdown
        self.error = error


# Recipients and rendering


def recipients_for(project: Project, extra: list[str], admins: bool = True) -> list[tuple]:
    """(address, language) pairs: admins in their own language, extra addresses in the
    default one; an address listed twice gets one email."""
    pairs: dict[str, str] = {}
    if admins:
        for user in project.admins().order_by("email"):
            pairs[user.email.lower()] = user.language or settings.LANGUAGE_CODE
    for address in extra:
        pairs.setdefault(address.lower(), settings.LANGUAGE_CODE)
    return list(pairs.items())


def project_url(project: Project) -> str:
    return f"{settings.SITE_URL}/projects/{project.slug}/"


def budget_context(alert: BudgetAlert) -> dict[str, Any]:
    budget = alert.budget
    at = budgets._midnight_utc(alert.period) + timedelta(hours=12)  # inside the alert's month
    return {
        "alert": alert,
        "project": budget.project,
        "environment": budget.environment_name,
        "period": alert.period,
        "spend": money_str(alert.spend_usd.quantize(budgets.CENT)),
        "limit": money_str(alert.limit_usd),
        "percent": (alert.spend_usd * 100 / alert.limit_usd).quantize(Decimal("0.1")),
        "forecast": (money_str(alert.forecast_usd.quantize(budgets.CENT))
                     if alert.forecast_usd is not None else None),
        "is_forecast": alert.kind == BudgetAlert.Kind.FORECAST,
        "hard_limit": budget.hard_limit,
        "top_models": [
            {"model": m["model"], "spend": money_str(m["spend_usd"].quantize(budgets.CENT))}
            for m in budgets.top_models(budget, at)
        ],
        "url": project_url(budget.project),
    }


def health_context(alert: HealthAlert) -> dict[str, Any]:
    return {
        "alert": alert,
        "project": alert.project,
        "kind": alert.kind,
        "detail": alert.detail,
        "url": project_url(alert.project),
    }


# Delivery, shared by budget and health alerts


def _deliver(model: type[models.Model], alert_id: int,
             build: Callable[[Any], tuple[list[tuple], str, dict]]) -> int:  # fmt: skip
    """Send what is still unsent of one alert; returns how many emails went out now.
    Raises SendFailed (after recording the attempt) when SMTP fails."""
    failure: SendFailed | None = None
    sent = 0
    with transaction.atomic():
        # The row lock serializes duplicate tasks: the second one waits, then sees sent_at.
        alert: Any = model._default_manager.select_for_update().filter(pk=alert_id).first()
        if alert is None or alert.sent_at is not None:
            return 0
        recipients, template, context = build(alert)
        todo = [(a, lang) for a, lang in recipients if a not in alert.delivered_to]
        alert.attempts += 1
        now = timezone.now()
        try:
            if todo:
                connection = get_connection()  # EMAIL_TIMEOUT bounds a hanging server
                with connection:
                    for address, language in todo:
                        render_email(template, context, language=language, to=address,
                                     connection=connection).send()
                        alert.delivered_to = [*alert.delivered_to, address]
                        sent += 1
        except RETRYABLE as exc:
            countdown = backoff(alert.attempts)
            alert.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            alert.next_attempt_at = now + timedelta(seconds=countdown)
            failure = SendFailed(countdown, exc)
        else:
            alert.sent_at = now
            alert.next_attempt_at = None
            if not recipients:
                alert.last_error = "no recipients"  # an earlier SMTP error stays, as history
        alert.save(update_fields=["attempts", "delivered_to", "sent_at", "last_error",
                                  "next_attempt_at"])  # fmt: skip
    if failure is not None:
        log.warning("alert %s %s: attempt %d failed (%s); retrying in %.0fs",
                    model.__name__, alert_id, alert.attempts, alert.last_error,
                    failure.countdown)  # fmt: skip
        raise failure
    return sent


def _budget_parts(alert: BudgetAlert) -> tuple[list[tuple], str, dict]:
    budget = alert.budget
    recipients = recipients_for(budget.project, list(budget.extra_recipients),
                                admins=budget.notify_admins)  # fmt: skip
    return recipients, "usage/email/budget_alert", budget_context(alert)


def _health_parts(alert: HealthAlert) -> tuple[list[tuple], str, dict]:
    return recipients_for(alert.project, []), "usage/email/health_alert", health_context(alert)


def deliver_budget_alert(alert_id: int) -> int:
    return _deliver(BudgetAlert, alert_id, _budget_parts)


def deliver_health_alert(alert_id: int) -> int:
    return _deliver(HealthAlert, alert_id, _health_parts)


def _run_with_retries(task: Any, deliver: Callable[[int], int], alert_id: int) -> int:
    try:
        return deliver(alert_id)
    except SendFailed as failed:
        if task.request.retries >= MAX_ATTEMPTS:
            log.error("giving up on alert %s after %d tries", alert_id, MAX_ATTEMPTS)
            return 0
        raise task.retry(exc=failed.error, countdown=failed.countdown,
                         max_retries=MAX_ATTEMPTS) from None  # fmt: skip


@shared_task(bind=True, name="usage.alerts.send_budget_alert", ignore_result=True,
             acks_late=True, max_retries=MAX_ATTEMPTS)  # fmt: skip
def send_budget_alert(self, alert_id: int) -> int:
    """Email one budget alert to its recipients, once; retried while SMTP is down."""
    return _run_with_retries(self, deliver_budget_alert, alert_id)


@shared_task(bind=True, name="usage.alerts.send_health_alert", ignore_result=True,
             acks_late=True, max_retries=MAX_ATTEMPTS)  # fmt: skip
def send_health_alert(self, alert_id: int) -> int:
    return _run_with_retries(self, deliver_health_alert, alert_id)


# Webhook (Slack-style receivers): one JSON POST per budget alert


def webhook_payload(alert: BudgetAlert) -> dict[str, Any]:
    context = budget_context(alert)
    with translation.override(settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string("usage/email/budget_alert_subject.txt",
                                            context).split())  # fmt: skip
    return {
        "text": f"{subject} {context['url']}",  # what Slack-style receivers display
        "event": "budget.forecast" if context["is_forecast"] else "budget.threshold",
        "project": alert.budget.project.slug,
        "environment": context["environment"],
        "period": alert.period.strftime("%Y-%m"),
        "threshold": alert.threshold,
        "spend_usd": money_str(alert.spend_usd),
        "limit_usd": money_str(alert.limit_usd),
        "percent": str(context["percent"]),
        "forecast_usd": context["forecast"],
        "top_models": context["top_models"],
        "url": context["url"],
    }


def deliver_budget_webhook(alert_id: int) -> bool:
    failure: SendFailed | None = None
    with transaction.atomic():
        alert = (BudgetAlert.objects.select_for_update().select_related("budget")
                 .filter(pk=alert_id).first())  # fmt: skip
        if alert is None or alert.webhook_sent_at is not None or not alert.budget.webhook_url:
            return False
        alert.webhook_attempts += 1
        try:
            response = httpx.post(alert.budget.webhook_url, json=webhook_payload(alert),
                                  timeout=10.0)  # fmt: skip
            if response.status_code >= 300:
                raise httpx.HTTPError(f"HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            # Never the URL itself in the error: it often carries the receiver's token.
            detail = str(exc) if str(exc).startswith("HTTP ") else type(exc).__name__
            alert.last_error = f"webhook: {detail}"
            failure = SendFailed(backoff(alert.webhook_attempts), exc)
        else:
            alert.webhook_sent_at = timezone.now()
        alert.save(update_fields=["webhook_attempts", "webhook_sent_at", "last_error"])
    if failure is not None:
        raise failure
    return True


@shared_task(bind=True, name="usage.alerts.send_budget_webhook", ignore_result=True,
             acks_late=True, max_retries=MAX_ATTEMPTS)  # fmt: skip
def send_budget_webhook(self, alert_id: int) -> bool:
    return bool(_run_with_retries(self, deliver_budget_webhook, alert_id))


# Queuing


def queue_budget_alert(alert_id: int) -> None:
    send_budget_alert.delay(alert_id)
    if BudgetAlert.objects.filter(pk=alert_id).exclude(budget__webhook_url="").exists():
        send_budget_webhook.delay(alert_id)


def queue_health_alert(alert_id: int) -> None:
    send_health_alert.delay(alert_id)


def requeue_unsent(now: datetime | None = None) -> int:
    """Queue again the alerts whose send task was lost (the retry is overdue)."""
    cutoff = (now or timezone.now()) - SWEEP_GRACE
    count = 0
    for model, task in ((BudgetAlert, send_budget_alert), (HealthAlert, send_health_alert)):
        stale = model.objects.filter(sent_at__isnull=True, next_attempt_at__lt=cutoff,
                                     attempts__lt=MAX_ATTEMPTS)  # fmt: skip
        for alert_id in stale.values_list("pk", flat=True)[:500]:
            task.delay(alert_id)
            count += 1
    return count


def describe_health(alert: HealthAlert) -> str:
    """One line for the command's output (English: it is for the operator)."""
    d = alert.detail
    if alert.kind == HealthAlert.Kind.SUCCESS_RATE:
        return f"success rate {d.get('success_rate')}% of {d.get('calls')} calls"
    if alert.kind == HealthAlert.Kind.LATENCY:
        return f"p95 latency over {d.get('threshold_ms')} ms ({d.get('slow')} slow calls)"
    return f"model {alert.episode_key} has no price"
