"""Adding, rotating and revoking provider keys: every view, API call and command uses these."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts import audit, vault
from accounts.models import Environment, ProviderKey, User


def rotation_grace() -> timedelta:
    """How long a rotated key keeps working (settings.ROTATION_GRACE_HOURS, default 24)."""
    return timedelta(hours=settings.ROTATION_GRACE_HOURS)


def default_key_name(environment: Environment, when: datetime | None = None) -> str:
    """The guides' naming scheme: project-environment-YYYYMMDD."""
    day = timezone.localdate(when or timezone.now())
    return f"{environment.project.slug}-{environment.name}-{day:%Y%m%d}"


def _active_key_conflict(environment: Environment) -> ValidationError:
    current = environment.active_key()
    masked = f" ({current.masked})" if current else ""
    return ValidationError(
        f"Environment '{environment.name}' already has an active key{masked}; "
        "rotate that key instead of adding a second one.",
        code="active_key_exists",
    )


@sensitive_variables("secret")
def add_provider_key(
    environment: Environment,
    secret: str,
    *,
    name: str = "",
    base_url: str = "",
    issued_at: datetime | None = None,
    kind: str = ProviderKey.Kind.API,
    by: User | None = None,
    ip: str | None = None,
) -> ProviderKey:
    if kind == ProviderKey.Kind.ADMIN and by is not None and not by.is_staff:
        # An Admin key reads every project's usage in the provider organization, and the
        # import attributes it to keymeter projects: not for one project's admin to add.
        raise ValidationError(
            "Only staff can add an Admin key: it reads the whole organization's usage "
            "and costs.", code="admin_key_staff_only")
    secret = vault.clean_secret(secret)
    if issued_at is not None and issued_at > timezone.now() + timedelta(minutes=5):
        raise ValidationError("issued_at cannot be in the future.", code="future_issued_at")
    prefix, last4 = vault.display_parts(secret)
    key = ProviderKey(
        project=environment.project,
        environment=environment,
        name=name.strip() or default_key_name(environment),
        kind=kind,
        base_url=(base_url.strip() or ProviderKey._meta.get_field("base_url").default).rstrip("/"),
        secret_encrypted=vault.encrypt(secret),
        prefix=prefix,
        last4=last4,
        fingerprint=vault.fingerprint(secret),
        issued_at=issued_at or timezone.now(),
        created_by=by,
    )
    try:
        with transaction.atomic():
            key.save()
            audit.record(
                "key.add",
                actor=by,
                project=key.project,
                target=key,
                ip=ip,
                environment=environment.name,
                name=key.name,
                key=key.masked,
            )
    except IntegrityError:
        raise _active_key_conflict(environment) from None
    return key


@sensitive_variables("new_secret")
def rotate_key(
    key: ProviderKey,
    new_secret: str,
    *,
    by: User | None = None,
    ip: str | None = None,
    grace: timedelta | None = None,
) -> ProviderKey:
    """Store the new secret as the environment's active key at once; the old one
    keeps working for `grace` (retiring) and is then revoked."""
    new_secret = vault.clean_secret(new_secret)
    if key.status == ProviderKey.Status.REVOKED:
        raise ValidationError("This key is revoked; add a new key instead.", code="revoked")
    if vault.fingerprint(new_secret) == key.fingerprint:
        raise ValidationError("The new secret is the same as the current one.", code="same")
    prefix, last4 = vault.display_parts(new_secret)
    now = timezone.now()
    grace = rotation_grace() if grace is None else grace
    with transaction.atomic():
        old = ProviderKey.objects.select_for_update().get(pk=key.pk)
        # A retiring key already has a successor; a second one would break the
        # one-active-key-per-environment constraint.
        if old.status != ProviderKey.Status.ACTIVE:
            raise ValidationError(
                "Only the active key can be rotated; this one is already being replaced.",
                code="not_active",
            )
        old.status = ProviderKey.Status.RETIRING
        old.retiring_until = now + grace
        old.save(update_fields=["status", "retiring_until"])
        new = ProviderKey.objects.create(
            project=old.project,
            environment=old.environment,
            name=default_key_name(old.environment, now),
            provider=old.provider,
            kind=old.kind,
            base_url=old.base_url,
            secret_encrypted=vault.encrypt(new_secret),
            prefix=prefix,
            last4=last4,
            fingerprint=vault.fingerprint(new_secret),
            issued_at=now,
            created_by=by,
        )
        old.replaced_by = new
        old.save(update_fields=["replaced_by"])
        audit.record(
            "key.rotate",
            actor=by,
            project=old.project,
            target=new,
            ip=ip,
            environment=old.environment.name,
            old_key=old.masked,
            new_key=new.masked,
            retiring_until=old.retiring_until.isoformat(),
        )
    key.refresh_from_db()
    return new


def revoke_key(key: ProviderKey, *, by: User | None = None, ip: str | None = None) -> None:
    if key.status == ProviderKey.Status.REVOKED:
        return
    with transaction.atomic():
        key.status = ProviderKey.Status.REVOKED
        key.retiring_until = None
        key.save(update_fields=["status", "retiring_until"])
        audit.record("key.revoke", actor=by, project=key.project, target=key, ip=ip,
                     key=key.masked)


def revoke_expired_retiring_keys(now: datetime | None = None) -> int:
    """End the grace period of rotated keys whose time is up."""
    now = now or timezone.now()
    expired = list(
        ProviderKey.objects.filter(status=ProviderKey.Status.RETIRING, retiring_until__lte=now)
        .select_related("project")
    )
    for key in expired:
        with transaction.atomic():
            key.status = ProviderKey.Status.REVOKED
            key.save(update_fields=["status"])
            audit.record("key.retire", project=key.project, target=key, key=key.masked,
                         reason="rotation grace period ended")
    return len(expired)


def reencrypt_all_keys(batch_size: int = 500) -> dict[str, int]:
    """Re-encrypt every stored secret with the first VAULT_KEYS entry (and refresh its
    fingerprint, which is keyed from that entry). Each batch commits on its own."""
    counts = {"rows": 0, "reencrypted": 0, "failed": 0}
    last_pk = 0
    while True:
        with transaction.atomic():
            batch = list(
                ProviderKey.objects.select_for_update()
                .filter(pk__gt=last_pk)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                break
            for key in batch:
                counts["rows"] += 1
                try:
                    plaintext = vault.decrypt(key.secret_encrypted)
                except vault.VaultError:
                    counts["failed"] += 1
                    continue
                key.secret_encrypted = vault.encrypt(plaintext)
                key.fingerprint = vault.fingerprint(plaintext)
                del plaintext
                counts["reencrypted"] += 1
            ProviderKey.objects.bulk_update(batch, ["secret_encrypted", "fingerprint"])
            last_pk = batch[-1].pk
    if counts["reencrypted"]:
        audit.record("vault.rotate", reencrypted=counts["reencrypted"], failed=counts["failed"])
    return counts
