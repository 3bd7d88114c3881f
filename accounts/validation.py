"""Ask the provider whether a key still works: GET {base_url}/models with it.

200 → valid; 401/403 → invalid (flagged, admins emailed once per episode);
anything else — timeouts, refused connections, 5xx, 429 — says nothing about the
key, so the result is "unknown" and nothing changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import audit, notices, vault
from accounts.models import KeyStageNotice, ProviderKey, User

logger = logging.getLogger(__name__)

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"


@dataclass
class Validation:
    key_id: int
    result: str  # valid, invalid or unknown
    status_code: int | None
    detail: str

    def as_dict(self) -> dict:
        return {
            "id": self.key_id,
            "result": self.result,
            "status_code": self.status_code,
            "detail": self.detail,
        }


@dataclass
class ValidationReport:
    results: list[Validation] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        counts = {VALID: 0, INVALID: 0, UNKNOWN: 0}
        for r in self.results:
            counts[r.result] += 1
        return counts


def _probe_url(key: ProviderKey) -> str:
    base = key.base_url.rstrip("/")
    # Admin keys cannot list models; their cheapest authenticated read is this.
    if key.kind == ProviderKey.Kind.ADMIN:
        return f"{base}/organization/projects?limit=1"
    return f"{base}/models"


@sensitive_variables("secret")
def _ask_provider(key: ProviderKey, client: httpx.Client) -> tuple[int | None, str]:
    try:
        secret = key.reveal_secret()
    except vault.VaultError:
        return None, "cannot decrypt the stored key with VAULT_KEYS"
    try:
        response = client.get(_probe_url(key), headers={"Authorization": f"Bearer {secret}"})
    except httpx.TimeoutException:
        return None, "timed out"
    except httpx.HTTPError as exc:
        # The exception names the URL, never the headers; keep only its type.
        return None, f"network error ({type(exc).__name__})"
    finally:
        del secret
    return response.status_code, f"HTTP {response.status_code}"


def validate_key(
    key: ProviderKey,
    client: httpx.Client | None = None,
    *,
    by: User | None = None,
    ip: str | None = None,
) -> Validation:
    """Validate one key and record the outcome on it."""
    own_client = client is None
    http = client or httpx.Client(timeout=settings.KEY_VALIDATION_TIMEOUT)
    try:
        status, detail = _ask_provider(key, http)
    finally:
        if own_client:
            http.close()
    now = timezone.now()
    if status == 200:
        ProviderKey.objects.filter(pk=key.pk).update(last_validated_at=now, invalid_at=None)
        key.last_validated_at, key.invalid_at = now, None
        return Validation(key.pk, VALID, status, "the provider accepts this key")
    if status in (401, 403):
        _mark_invalid(key, now, status, by=by, ip=ip)
        return Validation(key.pk, INVALID, status, "the provider rejects this key")
    return Validation(key.pk, UNKNOWN, status, f"could not tell: {detail}")


def _mark_invalid(key: ProviderKey, now, status: int, *, by: User | None, ip: str | None) -> None:
    with transaction.atomic():
        # Only the run that starts the episode audits and emails.
        started = ProviderKey.objects.filter(pk=key.pk, invalid_at__isnull=True).update(
            invalid_at=now
        )
        key.refresh_from_db(fields=["invalid_at"])
        if not started:
            return
        audit.record(
            "key.invalid",
            actor=by,
            project=key.project,
            target=key,
            ip=ip,
            key=key.masked,
            name=key.name,
            status_code=status,
        )
        notices.open_notice(
            project=key.project, stage=KeyStageNotice.Stage.INVALID, episode=now, provider_key=key
        )


def validate_all_keys(client: httpx.Client | None = None) -> ValidationReport:
    """Validate every active key (the daily task and `manage.py validate_keys`)."""
    report = ValidationReport()
    own_client = client is None
    http = client or httpx.Client(timeout=settings.KEY_VALIDATION_TIMEOUT)
    try:
        active = ProviderKey.objects.filter(status=ProviderKey.Status.ACTIVE).select_related(
            "project", "environment"
        )
        for key in active.order_by("pk"):
            report.results.append(validate_key(key, http))
    finally:
        if own_client:
            http.close()
    return report
