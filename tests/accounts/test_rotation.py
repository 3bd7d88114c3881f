"""Rotation stages, one email per stage change (real SMTP server) and grace periods.
Rotating while calls run through the real gateway: tests/usage/test_key_rotation.py."""

from __future__ import annotations

import email
import threading
import time
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.db import OperationalError, connection

from accounts import notices
from accounts.keys import add_provider_key, rotate_key
from accounts.models import AuditEvent, KeyStageNotice, ProviderKey, Role, RotationStage
from accounts.projects import set_member_role
from accounts.rotation import check_rotation
from accounts.tokens import create_gateway_token
from tests.conftest import make_user
from tests.support.servers import free_port

SECRET = "sk-proj-" + "a1B2c3D4e5" * 4 + "T3BlbkFJ" + "f6G7h8J9k0" * 4
NEW_SECRET = "sk-proj-" + "Zz9Yy8Xx7w" * 4 + "T3BlbkFJ" + "Vv6Uu5Tt4s" * 4
T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["subject"]) for m in self.messages]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def smtp_port():
    return free_port()


@pytest.fixture
def inbox(settings, smtp_port):
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    yield handler
    controller.stop()


@pytest.fixture
def production(alpha):
    return alpha.environments.get(name="production")


@pytest.fixture
def old_key(production, alice):
    with time_machine.travel(T0, tick=False):
        return add_provider_key(production, SECRET, by=alice)


def stage_at(key: ProviderKey, days: int, hours: int = 0) -> str:
    return key.rotation_stage(key.issued_at + timedelta(days=days, hours=hours))


def test_stages_follow_the_90_day_policy_with_a_14_day_warning(old_key):
    assert stage_at(old_key, 0) == RotationStage.OK
    assert stage_at(old_key, 75) == RotationStage.OK
    assert stage_at(old_key, 75, hours=23) == RotationStage.OK  # whole days only
    assert stage_at(old_key, 76) == RotationStage.DUE
    assert stage_at(old_key, 89, hours=23) == RotationStage.DUE
    assert stage_at(old_key, 90) == RotationStage.OVERDUE
    assert stage_at(old_key, 400) == RotationStage.OVERDUE


@pytest.mark.parametrize("days,stage", [(75, "ok"), (76, "due"), (89, "due"), (90, "overdue")])
def test_check_rotation_stages_keys_and_tokens_by_age(old_key, production, alice, days, stage):
    with time_machine.travel(T0, tick=False):
        token, _ = create_gateway_token(production, "ci", by=alice)
    with time_machine.travel(T0 + timedelta(days=days), tick=False):
        report = check_rotation()
    by_kind = {(s.kind, s.id): s for s in report.staged}
    assert by_kind[("key", old_key.pk)].stage == stage
    assert by_kind[("key", old_key.pk)].age_days == days
    assert by_kind[("token", token.pk)].stage == stage


def test_the_policy_is_per_project(old_key, alpha):
    alpha.rotation_days = 30
    alpha.save()
    old_key.refresh_from_db()
    assert stage_at(old_key, 15) == RotationStage.OK
    assert stage_at(old_key, 16) == RotationStage.DUE
    assert stage_at(old_key, 30) == RotationStage.OVERDUE


def test_each_stage_change_emails_the_admins_once(old_key, alpha, alice, bob, inbox):
    zhao = make_user("zhao@example.org", name="Zhao", language="zh-hans")
    set_member_role(alpha, zhao, Role.ADMIN, by=alice)

    with time_machine.travel(T0 + timedelta(days=75), tick=False):
        check_rotation(deliver_now=True)
    assert inbox.messages == []  # still ok

    with time_machine.travel(T0 + timedelta(days=76), tick=False):
        check_rotation(deliver_now=True)
        check_rotation(deliver_now=True)
    with time_machine.travel(T0 + timedelta(days=80), tick=False):
        check_rotation(deliver_now=True)
    recipients = sorted(m["to"] for m in inbox.messages)
    assert recipients == ["alice@example.org", "zhao@example.org"]  # not bob (member)
    english = next(m for m in inbox.messages if m["to"] == "alice@example.org")
    assert "rotate" in english["subject"] and old_key.masked in english["subject"]
    body = english.get_body(("plain",)).get_content()
    assert "76 days old" in body and "every 90 days" in body
    assert "/projects/alpha/" in body
    assert english.get_body(("html",)) is not None
    chinese = next(m for m in inbox.messages if m["to"] == "zhao@example.org")
    assert "轮换" in chinese["subject"]

    with time_machine.travel(T0 + timedelta(days=90), tick=False):
        check_rotation(deliver_now=True)
        check_rotation(deliver_now=True)
    assert len(inbox.messages) == 4
    overdue = [m for m in inbox.messages[2:] if m["to"] == "alice@example.org"]
    assert "overdue" in overdue[0]["subject"]

    rows = KeyStageNotice.objects.filter(provider_key=old_key).order_by("created_at")
    assert [(n.stage, n.attempts, n.recipients) for n in rows] == [("due", 1, 2), ("overdue", 1, 2)]
    assert all(n.sent_at for n in rows)
    assert AuditEvent.objects.filter(action="key.rotation_due").count() == 1
    everything = "".join(m.as_string() for m in inbox.messages)
    assert SECRET not in everything and SECRET[8:30] not in everything


@pytest.mark.django_db(transaction=True)
def test_racing_runs_send_one_email(old_key, alice, inbox):
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run():
        try:
            with time_machine.travel(T0 + timedelta(days=77), tick=False):
                barrier.wait()
                for _attempt in range(50):
                    try:
                        check_rotation(deliver_now=True)
                        break
                    except OperationalError as exc:
                        # The suite's in-memory SQLite fails a writer at once ("table is
                        # locked") instead of waiting; run again like the next beat would.
                        if "locked" not in str(exc):
                            raise
                        time.sleep(0.05)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    inbox.wait_for(1, timeout=1)
    assert inbox.subjects() and len(inbox.messages) == 1
    assert KeyStageNotice.objects.filter(provider_key=old_key).count() == 1


def test_a_failed_delivery_is_recorded_and_sent_once_the_server_is_back(
    old_key, alice, settings, smtp_port
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", smtp_port, 2
    with time_machine.travel(T0 + timedelta(days=80), tick=False):
        report = check_rotation()  # queue: only the notice row here
    [notice] = report.notices
    with pytest.raises(notices.NoticeNotSent):
        notices.deliver_notice(notice.pk)  # nothing listens on the port yet
    notice.refresh_from_db()
    assert (notice.attempts, notice.sent_at) == (1, None)
    assert notice.last_error  # why, for the admin page; never a secret

    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        assert notices.deliver_notice(notice.pk) == ["alice@example.org"]
        assert notices.deliver_notice(notice.pk) == []  # a retried task sends nothing
    finally:
        controller.stop()
    notice.refresh_from_db()
    assert notice.attempts == 2 and notice.sent_at is not None and notice.last_error == ""
    assert len(handler.messages) == 1


@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_delivers_the_queued_email(old_key, alice, inbox):
    from celery.contrib.testing.worker import start_worker

    from dashboard.celery import app

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        with time_machine.travel(T0 + timedelta(days=91), tick=False):
            report = check_rotation()
        inbox.wait_for(1)
    assert [m["to"] for m in inbox.messages] == ["alice@example.org"]
    assert "overdue" in inbox.messages[0]["subject"]
    notice = KeyStageNotice.objects.get(pk=report.notices[0].pk)
    assert notice.sent_at is not None and notice.attempts == 1


def test_the_grace_period_ends_with_the_retiring_key_revoked(old_key, alice, settings):
    settings.ROTATION_GRACE_HOURS = 2
    rotated_at = T0 + timedelta(days=80)
    with time_machine.travel(rotated_at, tick=False):
        new = rotate_key(old_key, NEW_SECRET, by=alice)
    old_key.refresh_from_db()
    assert old_key.status == ProviderKey.Status.RETIRING
    assert old_key.retiring_until == rotated_at + timedelta(hours=2)

    with time_machine.travel(rotated_at + timedelta(hours=1, minutes=59), tick=False):
        assert check_rotation().revoked == 0
    old_key.refresh_from_db()
    assert old_key.status == ProviderKey.Status.RETIRING

    with time_machine.travel(rotated_at + timedelta(hours=2, minutes=1), tick=False):
        report = check_rotation()
    assert report.revoked == 1
    old_key.refresh_from_db()
    new.refresh_from_db()
    assert old_key.status == ProviderKey.Status.REVOKED
    assert new.status == ProviderKey.Status.ACTIVE
    assert AuditEvent.objects.filter(action="key.retire", target=f"providerkey:{old_key.pk}")
    # The revoked key is no longer staged; its fresh successor is ok.
    assert [(s.id, s.stage) for s in report.staged if s.kind == "key"] == [(new.pk, "ok")]


def test_the_command_prints_each_stage_and_who_it_emailed(old_key, alice, inbox, capsys):
    with time_machine.travel(T0 + timedelta(days=76), tick=False):
        call_command("check_rotation")
        call_command("check_rotation")
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert (
        f"key {old_key.pk} alpha/production {old_key.name} ({old_key.masked}): 76 days, due; "
        "emailed alice@example.org" in lines
    )
    assert (
        f"key {old_key.pk} alpha/production {old_key.name} ({old_key.masked}): 76 days, due"
        in lines
    )  # the second run: staged, nothing emailed
    assert len(inbox.messages) == 1
    assert SECRET not in out


class RefusesOnce(Inbox):
    """Refuses one address the first time (451: try again later), takes everything else."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address, self.refused = address, False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address == self.address and not self.refused:
            self.refused = True
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_retry_after_a_partial_failure_emails_only_who_missed_it(
    old_key, alpha, alice, bob, settings, smtp_port
):
    from accounts.projects import set_member_role

    set_member_role(alpha, bob, "admin", by=alice)
    handler = RefusesOnce("bob@example.org")
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", smtp_port, 2
    try:
        with time_machine.travel(T0 + timedelta(days=80), tick=False):
            [notice] = check_rotation().notices
        with pytest.raises(notices.NoticeNotSent):
            notices.deliver_notice(notice.pk)
        notices.deliver_notice(notice.pk)
    finally:
        controller.stop()
    assert sorted(str(m["to"]) for m in handler.messages) == [
        "alice@example.org", "bob@example.org"]
    notice.refresh_from_db()
    assert notice.sent_at is not None and notice.recipients == 2
