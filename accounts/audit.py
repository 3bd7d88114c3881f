"""The audit log: one AuditEvent per change to keys, tokens, budgets, prices and members."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.http import HttpRequest

from accounts.models import AuditEvent, Project, User


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    ip = request.META.get("REMOTE_ADDR")
    # X-Forwarded-For is only believed behind a proxy the operator says sets it;
    # otherwise any client could write its own "address" into the audit log.
    if settings.USE_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            ip = forwarded.split(",")[-settings.USE_X_FORWARDED_FOR].strip() or ip
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
