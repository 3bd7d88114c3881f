"""Celery tasks of the usage app: thin wrappers around the functions they run."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from usage import pipeline

FLUSH_TIME_BUDGET = 5.0  # seconds; beat starts another run every 2 s anyway


@shared_task(name="usage.tasks.flush_calls", ignore_result=True)
def flush_calls(time_budget: float = FLUSH_TIME_BUDGET) -> dict[str, Any]:
    """Replay the spool, then flush the call stream until drained or out of time."""
    return pipeline.drain(time_budget=time_budget).as_dict()


@shared_task(name="usage.tasks.import_provider_usage", ignore_result=True)
def import_provider_usage() -> dict[str, int]:
    """Daily: the provider's own usage and costs for yesterday and today (UTC)."""
    from usage import provider_import

    return provider_import.import_provider_usage(*provider_import.utc_days_back(2))
