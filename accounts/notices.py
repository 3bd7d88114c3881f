"""Key hygiene emails: one KeyStageNotice row per (key or token, stage, episode),
and its delivery to the project's admins, each in their own language.

Exactly once: the notice row is unique, only the run that created it queues the
email, and delivery locks the row and skips it once `sent_at` is set. A failed
delivery records the attempt and raises, so the Celery task retries with backoff;
`requeue_unsent_notices` is the safety net for a queue message that never arrived.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.language import language_for
from accounts.mail import render_email
from accounts.models import GatewayToken, KeyStageNotice, Project, ProviderKey, User

logger = logging.getLogger(__name__)

# Errors that mean "the mail server is down or refused", worth retrying later.
DELIVERY_ERRORS = (smtplib.SMTPException, OSError)


class NoticeNotSent(Exception):
    """The email could not be sent this time; the task retries it."""


def open_notice(
    *,
    project: Project,
    stage: str,
    episode: datetime,
    provider_key: ProviderKey | None = None,
    gateway_token: GatewayToken | None = None,
    queue: bool = True,
) -> KeyStageNotice | None:
    """The new notice row, or None when another run already made it.

    With queue=True its email task is queued once the surrounding transaction commits.
    """
    notice, created = KeyStageNotice.objects.get_or_create(
        provider_key=provider_key,
        gateway_token=gateway_token,
        stage=stage,
        episode=episode,
        defaults={"project": project},
    )
    if not created:
        return None
    if queue:
        notice_id = notice.pk
        transaction.on_commit(lambda: queue_notice(notice_id))
    return notice


def queue_notice(notice_id: int) -> None:
    from accounts.tasks import send_key_notice

    try:
        send_key_notice.delay(notice_id)
    except Exception:  # broker down: requeue_unsent_notices picks it up later
        logger.warning("could not queue key notice %s; it will be requeued", notice_id)


def requeue_unsent_notices(
    now: datetime | None = None, older_than: timedelta = timedelta(hours=2)
) -> int:
    """Queue again notices that are still unsent a while after they were made."""
    cutoff = (now or timezone.now()) - older_than
    ids = list(
        KeyStageNotice.objects.filter(sent_at__isnull=True, created_at__lte=cutoff).values_list(
            "pk", flat=True
        )[:1000]
    )
    for notice_id in ids:
        queue_notice(notice_id)
    return len(ids)


def _recipients(project: Project) -> list[User]:
    return list(project.admins().exclude(email="").order_by("pk"))


def _context(notice: KeyStageNotice, user: User) -> dict:
    subject = notice.subject
    project = notice.project
    is_key = isinstance(subject, ProviderKey)
    return {
        "user": user,
        "notice": notice,
        "stage": notice.stage,
        "is_key": is_key,
        "project": project,
        "environment": subject.environment.name,
        "name": subject.name,
        "masked": subject.masked,
        "age_days": subject.age_days(),
        "since": subject.rotation_since,
        "policy_days": project.rotation_days,
        "grace_hours": settings.ROTATION_GRACE_HOURS,
        "url": settings.SITE_URL + reverse("dashboard:project", args=[project.slug]),
    }


def render_notice(notice: KeyStageNotice, user: User) -> EmailMultiAlternatives:
    """The email for one recipient, in their language (else the site's default)."""
    return render_email("accounts/email/key_notice", _context(notice, user),
                        language=language_for(user, settings.LANGUAGE_CODE), to=user.email)


def deliver_notice(notice_id: int) -> list[str]:
    """Send the notice's emails unless already sent; returns the addresses emailed.

    Raises NoticeNotSent (after recording the attempt) when the mail server fails.
    """
    error: Exception | None = None
    with transaction.atomic():
        notice = (
            KeyStageNotice.objects.select_for_update(of=("self",))
            .select_related("project", "provider_key__environment", "gateway_token__environment")
            .filter(pk=notice_id)
            .first()
        )
        if notice is None or notice.sent_at is not None:
            return []
        recipients = _recipients(notice.project)
        todo = [user for user in recipients if user.email not in notice.delivered_to]
        notice.attempts += 1
        try:
            if todo:
                with get_connection(fail_silently=False) as connection:
                    for user in todo:  # one at a time: a retry resumes after the last one sent
                        connection.send_messages([render_notice(notice, user)])
                        notice.delivered_to = [*notice.delivered_to, user.email]
        except DELIVERY_ERRORS as exc:
            error = exc
            notice.last_error = f"{type(exc).__name__}: {exc}"[:300]
            notice.save(update_fields=["attempts", "last_error", "delivered_to"])
        else:
            notice.sent_at = timezone.now()
            notice.recipients = len(notice.delivered_to)
            notice.last_error = ""
            notice.save(update_fields=["attempts", "sent_at", "recipients", "last_error",
                                       "delivered_to"])
    if error is not None:
        raise NoticeNotSent(f"key notice {notice_id}: {notice.last_error}") from error
    return [user.email for user in recipients]
