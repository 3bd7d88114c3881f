"""Celery tasks of the usage app: thin wrappers around the functions they run."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import close_old_connections, connection

from usage import alerts, pipeline

# Celery's autodiscovery imports only usage.tasks: this makes the worker know alerts' tasks.
ALERT_TASKS = (alerts.send_budget_alert, alerts.send_budget_webhook, alerts.send_health_alert)

log = logging.getLogger(__name__)

FLUSH_TIME_BUDGET = 5.0  # seconds; beat starts another run every 2 s anyway


@shared_task(name="usage.tasks.flush_calls", ignore_result=True)
def flush_calls(time_budget: float = FLUSH_TIME_BUDGET) -> dict[str, Any]:
    """Replay the spool, then flush the call stream until drained or out of time."""
    if not connection.in_atomic_block:
        # A long-lived worker has no request cycle to drop a connection that broke
        # (database restart) or aged out; without this every later flush would fail.
        close_old_connections()
    result = pipeline.drain(time_budget=time_budget)
    if result.projects:
        # Budgets whose spend moved; the 5-minute beat is the safety net if this is lost.
        try:
            check_budgets.delay(sorted(result.projects))
        except Exception:
            log.warning("could not queue the budget check after a flush", exc_info=True)
    return result.as_dict()


@shared_task(name="usage.tasks.check_budgets", ignore_result=True)
def check_budgets(project_ids: list[int] | None = None) -> dict[str, Any]:
    """After a flush: these projects' budgets. On the beat (no ids): every budget, health
    alerts, re-queue lost alert emails, republish hard limits."""
    from usage import budgets

    return budgets.run_checks(project_ids).as_dict()


@shared_task(name="usage.tasks.import_provider_usage", ignore_result=True)
def import_provider_usage() -> dict[str, int]:
    """Daily: the provider's own usage and costs for yesterday and today (UTC)."""
    from usage import provider_import

    return provider_import.import_provider_usage(*provider_import.utc_days_back(2))
