"""Health alerts per project over the last 15 minutes of the call log: success rate
below 95 %, p95 latency above 2 s, and a model with no price being used.

Each condition is an episode (a HealthAlert row): opened — and emailed once — when
the condition starts, closed when it clears; only a new episode alerts again. A
partial unique constraint allows one open episode per (project, kind, key), so two
checks racing open (and email) it once.

The call log is read only for the window, through the (project, created_at) index.
p95 needs no percentile function: the p95 (nearest rank) is above 2 s exactly when
fewer than ceil(0.95 n) calls took 2 s or less, which one COUNT … FILTER answers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from usage.models import ApiCall, HealthAlert
from usage.pricing import PriceBook

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=15)
MIN_CALLS = 20  # fewer calls say too little about a rate or a percentile
SUCCESS_RATE_MIN = 95  # percent
P95_LATENCY_MAX_MS = 2000
# An unpriced model's episode closes once it has a price, or when it has not been
# used unpriced for this long (so a rarely used model reminds at most daily).
UNPRICED_QUIET = timedelta(hours=24)


def _stats(project_ids, since: datetime, until: datetime) -> dict[int, dict[str, int]]:
    calls = ApiCall.objects.filter(created_at__gte=since, created_at__lte=until)
    if project_ids is not None:
        calls = calls.filter(project_id__in=list(project_ids))
    rows = calls.values("project_id").annotate(
        calls=Count("id"),
        errors=Count("id", filter=Q(status_code__gte=400)),
        slow=Count("id", filter=Q(latency_ms__gt=P95_LATENCY_MAX_MS)),
    )
    return {r["project_id"]: {k: int(v) for k, v in r.items()} for r in rows}


def _unpriced(project_ids, since: datetime, until: datetime) -> set[tuple[int, str]]:
    calls = ApiCall.objects.filter(created_at__gte=since, created_at__lte=until,
                                   cost_usd__isnull=True).exclude(model="")  # fmt: skip
    if project_ids is not None:
        calls = calls.filter(project_id__in=list(project_ids))
    return set(calls.values_list("project_id", "model").distinct())


def conditions(stats: dict[str, int]) -> dict[str, bool | None]:
    """kind → True (unhealthy), False (healthy) or None (too few calls to say)."""
    n = stats["calls"]
    if n < MIN_CALLS:
        return {HealthAlert.Kind.SUCCESS_RATE: None, HealthAlert.Kind.LATENCY: None}
    fast_needed = (95 * n + 99) // 100  # ceil(0.95 n), in integers
    return {
        HealthAlert.Kind.SUCCESS_RATE: (n - stats["errors"]) * 100 < SUCCESS_RATE_MIN * n,
        HealthAlert.Kind.LATENCY: n - stats["slow"] < fast_needed,
    }


def _detail(kind: str, stats: dict[str, int] | None, model: str = "") -> dict[str, Any]:
    window = int(WINDOW.total_seconds() // 60)
    if kind == HealthAlert.Kind.UNPRICED_MODEL:
        return {"model": model, "window_minutes": window}
    assert stats is not None
    n = stats["calls"]
    return {
        "calls": n, "errors": stats["errors"], "slow": stats["slow"], "window_minutes": window,
        "success_rate": f"{(n - stats['errors']) * 100 / n:.1f}",
        "threshold_percent": SUCCESS_RATE_MIN, "threshold_ms": P95_LATENCY_MAX_MS,
    }  # fmt: skip


def _open(project_id: int, kind: str, key: str, detail: dict, now: datetime) -> HealthAlert | None:
    from usage import alerts

    try:
        with transaction.atomic():
            alert = HealthAlert.objects.create(
                project_id=project_id, kind=kind, episode_key=key[:100], opened_at=now,
                next_attempt_at=now, detail=detail,
            )  # fmt: skip
    except IntegrityError:
        return None  # another check opened this episode: it sends
    transaction.on_commit(lambda: alerts.queue_health_alert(alert.pk), robust=True)
    return alert


def check_health(project_ids=None, now: datetime | None = None) -> list[HealthAlert]:
    """Open (and queue the email of) new episodes, close cleared ones; returns the new."""
    now = now or timezone.now()
    since = now - WINDOW
    stats = _stats(project_ids, since, now)
    unpriced = _unpriced(project_ids, since, now)
    open_episodes = HealthAlert.objects.filter(closed_at__isnull=True)
    if project_ids is not None:
        open_episodes = open_episodes.filter(project_id__in=list(project_ids))
    is_open = {(a.project_id, a.kind, a.episode_key): a for a in open_episodes}
    opened: list[HealthAlert] = []
    to_close: list[int] = []

    for project_id, s in stats.items():
        for kind, unhealthy in conditions(s).items():
            episode = is_open.get((project_id, kind, ""))
            if unhealthy and episode is None:
                if alert := _open(project_id, kind, "", _detail(kind, s), now):
                    opened.append(alert)
            elif unhealthy is False and episode is not None:
                to_close.append(episode.pk)
    for project_id, model in sorted(unpriced):
        if (project_id, HealthAlert.Kind.UNPRICED_MODEL, model[:100]) not in is_open:
            kind = HealthAlert.Kind.UNPRICED_MODEL
            if alert := _open(project_id, kind, model, _detail(kind, None, model), now):
                opened.append(alert)

    quiet = {
        (project_id, key): episode
        for (project_id, kind, key), episode in is_open.items()
        if kind == HealthAlert.Kind.UNPRICED_MODEL and (project_id, key) not in unpriced
    }
    if quiet:
        book = PriceBook.load()
        recent = set(
            ApiCall.objects.filter(
                project_id__in={p for p, _ in quiet}, model__in={m for _, m in quiet},
                cost_usd__isnull=True, created_at__gte=now - UNPRICED_QUIET,
            ).values_list("project_id", "model").distinct()
        )  # fmt: skip
        for (project_id, key), episode in quiet.items():
            if book.price_for(key, now) is not None or (project_id, key) not in recent:
                to_close.append(episode.pk)
    if to_close:
        HealthAlert.objects.filter(pk__in=to_close, closed_at__isnull=True).update(closed_at=now)
    return opened
