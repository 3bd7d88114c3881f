"""Celery tasks of the accounts app: thin wrappers around the functions they run."""

from __future__ import annotations

from celery import shared_task

from accounts import notices


@shared_task(name="accounts.tasks.check_rotation", ignore_result=True)
def check_rotation() -> dict[str, int]:
    """Daily: stage keys and tokens for rotation; one email per stage change."""
    from accounts import rotation

    return rotation.check_rotation().as_dict()


@shared_task(name="accounts.tasks.end_rotation_grace", ignore_result=True)
def end_rotation_grace() -> int:
    """Hourly: revoke rotated keys whose grace period is over."""
    from accounts import rotation

    return rotation.end_grace_periods()


@shared_task(name="accounts.tasks.validate_keys", ignore_result=True)
def validate_keys() -> dict[str, int]:
    """Daily: ask the provider whether each active key still works."""
    from accounts import validation

    return validation.validate_all_keys().as_dict()


# Retries with exponential backoff (1 s, 2 s, 4 s … capped at 10 min, jittered) for
# about a day of mail-server trouble; the notice row counts the attempts.
@shared_task(
    name="accounts.tasks.send_key_notice",
    ignore_result=True,
    autoretry_for=(notices.NoticeNotSent,),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=150,
)
def send_key_notice(notice_id: int) -> int:
    """Email one key notice to the project's admins; a no-op once it was sent."""
    return len(notices.deliver_notice(notice_id))
