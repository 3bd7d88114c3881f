"""The audit log: one AuditEvent per change to keys, tokens, budgets, prices and members."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import HttpRequest

from accounts.models import AuditEvent, Project, User


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # Behind a proxy the first X-Forwarded-For hop is the client.
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    ip = forwarded.split(",")[0].strip() if forwarded else request.META.get("REMOTE_ADDR")
    return ip or None


def record(
    action: str,
    *,
    actor: User | None = None,
    project: Project | None = None,
    target: models.Model | None = None,
    ip: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Write one event. `detail` must hold names and ids, never a secret."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        project=project,
        target=f"{target._meta.model_name}:{target.pk}" if target is not None else "",
        ip=ip,
        detail=detail,
    )
