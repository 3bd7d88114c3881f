"""Key hygiene at a glance: age, rotation stage and flags for each key and token.

Flags:
  unused   an active key or token with no call for KEY_UNUSED_DAYS, known to
           keymeter for at least that long (the later of issued_at and created_at:
           keymeter cannot have seen calls from before it held the key)
  shared   the same secret (fingerprint) is on another non-revoked key in another
           environment or project
  invalid  the provider rejected the key (accounts/validation.py)
  leaked   the key was found by a leak scan (accounts/leaks.py)

key_hygiene and token_hygiene take a fixed number of queries however many rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils import timezone

from accounts.models import GatewayToken, Project, ProviderKey, User

UNUSED, SHARED, INVALID, LEAKED = "unused", "shared", "invalid", "leaked"


def _last_calls(field: str, ids: list[int]) -> dict[int, datetime]:
    """The newest ApiCall per key (or token), in one grouped query.

    Only for keys (or tokens) whose last_used_at is empty: the flush keeps
    last_used_at current for every call it inserts, so a set value is already the
    newest, and the call log (millions of rows) is read only for the rest.
    """
    from usage.models import ApiCall

    if not ids:
        return {}
    rows = (
        ApiCall.objects.filter(**{f"{field}__in": ids})
        .values(field)
        .annotate(last=Max("created_at"))
        .order_by()
    )
    return {row[field]: row["last"] for row in rows}


def _latest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def _is_unused(known_since: datetime, last_used: datetime | None, now: datetime) -> bool:
    window = timedelta(days=settings.KEY_UNUSED_DAYS)
    if now - known_since < window:
        return False
    return last_used is None or now - last_used >= window


def shared_key_ids(keys: list[ProviderKey]) -> set[int]:
    """Ids of the given non-revoked keys whose secret is also on another non-revoked
    key in a different environment (of this or any other project). One query."""
    live = [k for k in keys if k.status != ProviderKey.Status.REVOKED]
    if not live:
        return set()
    twins = (
        ProviderKey.objects.filter(fingerprint__in={k.fingerprint for k in live})
        .exclude(status=ProviderKey.Status.REVOKED)
        .values_list("pk", "fingerprint", "environment_id")
    )
    environments: dict[str, set[int]] = {}
    for _pk, fingerprint, environment_id in twins:
        environments.setdefault(fingerprint, set()).add(environment_id)
    return {k.pk for k in live if environments.get(k.fingerprint, set()) - {k.environment_id}}


def _with_relations(rows: Iterable) -> list:
    if isinstance(rows, QuerySet):
        rows = rows.select_related("project", "environment")
    return list(rows)


def key_hygiene(keys: Iterable[ProviderKey], now: datetime | None = None) -> list[dict]:
    now = now or timezone.now()
    keys = _with_relations(keys)
    last_calls = _last_calls("provider_key_id", [k.pk for k in keys if not k.last_used_at])
    shared = shared_key_ids(keys)
    out = []
    for key in keys:
        active = key.status == ProviderKey.Status.ACTIVE
        last_used = _latest(key.last_used_at, last_calls.get(key.pk))
        flags = []
        if active and _is_unused(max(key.issued_at, key.created_at), last_used, now):
            flags.append(UNUSED)
        if key.pk in shared:
            flags.append(SHARED)
        if key.invalid_at is not None:
            flags.append(INVALID)
        if key.leaked_at is not None:
            flags.append(LEAKED)
        out.append(
            {
                "id": key.pk,
                "kind": key.kind,
                "project": key.project.slug,
                "environment": key.environment.name,
                "name": key.name,
                "masked": key.masked,
                "status": key.status,
                "age_days": key.age_days(now),
                "rotation_days": key.project.rotation_days,
                "stage": key.rotation_stage(now) if active else None,
                "flags": flags,
                "issued_at": key.issued_at,
                "last_used_at": last_used,
                "last_validated_at": key.last_validated_at,
            }
        )
    return out


def token_hygiene(tokens: Iterable[GatewayToken], now: datetime | None = None) -> list[dict]:
    now = now or timezone.now()
    tokens = _with_relations(tokens)
    last_calls = _last_calls("gateway_token_id", [t.pk for t in tokens if not t.last_used_at])
    out = []
    for token in tokens:
        last_used = _latest(token.last_used_at, last_calls.get(token.pk))
        unused = token.is_active and _is_unused(token.created_at, last_used, now)
        out.append(
            {
                "id": token.pk,
                "kind": "token",
                "project": token.project.slug,
                "environment": token.environment.name,
                "name": token.name,
                "masked": token.masked,
                "status": "active" if token.is_active else "revoked",
                "age_days": token.age_days(now),
                "rotation_days": token.project.rotation_days,
                "stage": token.rotation_stage(now) if token.is_active else None,
                "flags": [UNUSED] if unused else [],
                "issued_at": token.created_at,
                "last_used_at": last_used,
                "last_validated_at": None,
            }
        )
    return out


def hygiene_for_user(user: User, now: datetime | None = None) -> list[dict]:
    """Every provider key and gateway token in every project the user can see."""
    now = now or timezone.now()
    visible = Project.visible_to(user).values("pk")
    keys = ProviderKey.objects.filter(project__in=visible).order_by(
        "project__slug", "environment__name", "-created_at"
    )
    tokens = GatewayToken.objects.filter(project__in=visible).order_by(
        "project__slug", "environment__name", "-created_at"
    )
    return key_hygiene(keys, now) + token_hygiene(tokens, now)
