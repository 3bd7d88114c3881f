"""Gateway tokens (km_…) and personal API tokens (kmu_…): shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.models import ApiToken, Environment, GatewayToken, User

GATEWAY_PREFIX = "km_"
API_PREFIX = "kmu_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def create_gateway_token(
    environment: Environment, name: str, *, by: User | None = None, ip: str | None = None
) -> tuple[GatewayToken, str]:
    """Returns the row and the plaintext token, which is never available again."""
    plaintext = _new_token(GATEWAY_PREFIX)
    with transaction.atomic():
        token = GatewayToken.objects.create(
            project=environment.project,
            environment=environment,
            name=name.strip() or f"{environment.name}-token",
            digest=digest(plaintext),
            prefix=plaintext[:8],
            created_by=by,
        )
        audit.record("token.create", actor=by, project=environment.project, target=token,
                     ip=ip, environment=environment.name, name=token.name)
    return token, plaintext


def revoke_gateway_token(token: GatewayToken, *, by: User | None = None,
                         ip: str | None = None) -> None:
    if token.revoked_at:
        return
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record("token.revoke", actor=by, project=token.project, target=token, ip=ip,
                     name=token.name)


def gateway_token_for(plaintext: str) -> GatewayToken | None:
    if not plaintext.startswith(GATEWAY_PREFIX):
        return None
    return (
        GatewayToken.objects.select_related("project", "environment")
        .filter(digest=digest(plaintext), revoked_at__isnull=True)
        .first()
    )


def create_api_token(user: User, name: str = "", *, ip: str | None = None) -> tuple[ApiToken, str]:
    plaintext = _new_token(API_PREFIX)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name.strip() or "api", digest=digest(plaintext), prefix=plaintext[:8]
        )
        audit.record("api_token.create", actor=user, target=token, ip=ip, name=token.name)
    return token, plaintext


def revoke_api_token(token: ApiToken, *, ip: str | None = None) -> None:
    if token.revoked_at:
        return
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record("api_token.revoke", actor=token.user, target=token, ip=ip, name=token.name)


def user_for_api_token(plaintext: str) -> User | None:
    if not plaintext.startswith(API_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest(plaintext), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    # One write a minute at most, not one per request.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
