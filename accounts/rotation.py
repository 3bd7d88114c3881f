"""The rotation scheduler: stage every active key and token, email once per stage.

Stages come from ProviderKey.rotation_stage / GatewayToken.rotation_stage (age in
whole days since issued_at / created_at against Project.rotation_days, warning
ROTATION_WARNING_DAYS before). The daily beat task, `manage.py check_rotation`
and tests all call check_rotation().
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts import audit, keys, notices
from accounts.models import GatewayToken, KeyStageNotice, ProviderKey, RotationStage

logger = logging.getLogger(__name__)


@dataclass
class Staged:
    kind: str  # "key" or "token"
    id: int
    project: str
    environment: str
    name: str
    masked: str
    age_days: int
    stage: str
    notice: KeyStageNotice | None = None  # set when this run opened a notice
    emailed: list[str] = field(default_factory=list)


@dataclass
class RotationReport:
    staged: list[Staged] = field(default_factory=list)
    revoked: int = 0
    requeued: int = 0

    @property
    def notices(self) -> list[KeyStageNotice]:
        return [s.notice for s in self.staged if s.notice is not None]

    def as_dict(self) -> dict[str, int]:
        return {
            "staged": len(self.staged),
            "notices": len(self.notices),
            "revoked": self.revoked,
            "requeued": self.requeued,
        }


def _stage_one(subject: ProviderKey | GatewayToken, now: datetime, queue: bool) -> Staged:
    is_key = isinstance(subject, ProviderKey)
    stage = subject.rotation_stage(now)
    staged = Staged(
        kind="key" if is_key else "token",
        id=subject.pk,
        project=subject.project.slug,
        environment=subject.environment.name,
        name=subject.name,
        masked=subject.masked,
        age_days=subject.age_days(now),
        stage=stage,
    )
    if stage == RotationStage.OK:
        return staged
    with transaction.atomic():
        staged.notice = notices.open_notice(
            project=subject.project,
            stage=stage,
            episode=subject.rotation_since,
            provider_key=subject if isinstance(subject, ProviderKey) else None,
            gateway_token=subject if isinstance(subject, GatewayToken) else None,
            queue=queue,
        )
        if staged.notice is not None:
            audit.record(
                f"{staged.kind}.rotation_{stage}",
                project=subject.project,
                target=subject,
                name=subject.name,
                key=subject.masked,
                age_days=staged.age_days,
                policy_days=subject.project.rotation_days,
            )
    return staged


def check_rotation(now: datetime | None = None, *, deliver_now: bool = False) -> RotationReport:
    """Stage every active provider key and gateway token; open one notice per stage
    change (its email is queued, or sent at once with deliver_now, falling back to
    the queue if the mail server fails); end rotation grace periods that are over."""
    now = now or timezone.now()
    report = RotationReport()
    active_keys = ProviderKey.objects.filter(status=ProviderKey.Status.ACTIVE).select_related(
        "project", "environment"
    )
    active_tokens = GatewayToken.objects.filter(revoked_at__isnull=True).select_related(
        "project", "environment"
    )
    subjects: list[ProviderKey | GatewayToken] = [*active_keys.order_by("pk")]
    subjects += active_tokens.order_by("pk")
    for subject in subjects:
        report.staged.append(_stage_one(subject, now, queue=not deliver_now))
    if deliver_now:
        for staged in report.staged:
            if staged.notice is None:
                continue
            try:
                staged.emailed = notices.deliver_notice(staged.notice.pk)
            except Exception as exc:  # the worker retries what could not be sent now
                logger.warning(
                    "key notice %s not sent now (%s); queued for retry", staged.notice.pk, exc
                )
                notices.queue_notice(staged.notice.pk)
    report.revoked = end_grace_periods(now)
    report.requeued = notices.requeue_unsent_notices()
    return report


def end_grace_periods(now: datetime | None = None) -> int:
    """Revoke rotated keys whose grace period is over (audited by accounts.keys)."""
    return keys.revoke_expired_retiring_keys(now)
