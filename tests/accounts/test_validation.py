"""Key validation against real local HTTP servers: 200 valid, 401 invalid (emailed once
per episode), network trouble and 5xx unknown."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.core.management import call_command

from accounts.keys import add_provider_key
from accounts.models import AuditEvent, KeyStageNotice, ProviderKey
from accounts.validation import INVALID, UNKNOWN, VALID, validate_all_keys, validate_key
from tests.support.servers import free_port, serve
from tests.usage.conftest import upstream  # noqa: F401  (the session's fake OpenAI server)

SECRET = "sk-proj-" + "Qw3Er4Ty5U" * 4 + "T3BlbkFJ" + "Io6Pa7Sd8F" * 4
OTHER = "sk-proj-" + "Gh9Jk0Lz1X" * 4 + "T3BlbkFJ" + "Cv2Bn3Mq4W" * 4


class Answers:
    """A provider that answers /models with a fixed status, optionally after a delay."""

    def __init__(self, status: int, delay: float = 0.0) -> None:
        self.status, self.delay, self.calls = status, delay, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.calls += 1
        await asyncio.sleep(self.delay)
        body = json.dumps({"error": {"message": "overloaded", "type": "server_error"}}).encode()
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def eager_tasks():
    """Run queued Celery tasks inline, so a queued email lands in the locmem outbox."""
    from dashboard.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def key_at(alpha, alice):
    def make(base_url: str, secret: str = SECRET, environment: str = "production"):
        env = alpha.environments.get(name=environment)
        return add_provider_key(env, secret, base_url=base_url, by=alice)

    return make


@pytest.fixture
def fake(upstream):  # noqa: F811
    upstream.received.clear()
    upstream.rejected_keys.clear()
    yield upstream
    upstream.rejected_keys.clear()


def test_a_key_the_provider_accepts_is_valid(fake, key_at):
    key = key_at(f"{fake.url}/v1")
    result = validate_key(key)
    assert (result.result, result.status_code) == (VALID, 200)
    key.refresh_from_db()
    assert key.last_validated_at is not None and key.invalid_at is None
    [request] = fake.received
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["authorization"] == f"Bearer {SECRET}"


def test_a_rejected_key_is_flagged_audited_and_emailed_once_per_episode(
    fake, key_at, alice, mailoutbox, eager_tasks, django_capture_on_commit_callbacks
):
    key = key_at(f"{fake.url}/v1")
    fake.rejected_keys.add(SECRET)
    with django_capture_on_commit_callbacks(execute=True):
        first = validate_key(key)
        second = validate_key(key)
    assert (first.result, first.status_code) == (INVALID, 401)
    assert second.result == INVALID
    key.refresh_from_db()
    assert key.invalid_at is not None
    assert [m.to for m in mailoutbox] == [["alice@example.org"]]
    assert "rejects" in mailoutbox[0].subject and key.masked in mailoutbox[0].subject
    assert SECRET not in mailoutbox[0].body + mailoutbox[0].alternatives[0][0]
    [event] = AuditEvent.objects.filter(action="key.invalid")
    assert event.detail["status_code"] == 401 and SECRET not in json.dumps(event.detail)

    # Fixed at the provider: valid again, and a later rejection is a new episode.
    fake.rejected_keys.clear()
    assert validate_key(key).result == VALID
    key.refresh_from_db()
    assert key.invalid_at is None
    fake.rejected_keys.add(SECRET)
    with django_capture_on_commit_callbacks(execute=True):
        validate_key(key)
    assert len(mailoutbox) == 2
    assert KeyStageNotice.objects.filter(provider_key=key, stage="invalid").count() == 2


def test_an_unreachable_provider_says_nothing_about_the_key(key_at):
    key = key_at(f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    result = validate_key(key)
    assert result.result == UNKNOWN and result.status_code is None
    assert "network error" in result.detail
    key.refresh_from_db()
    assert key.invalid_at is None and key.last_validated_at is None
    assert not AuditEvent.objects.filter(action="key.invalid").exists()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_rate_limits_are_unknown(key_at, status):
    server = Answers(status)
    with serve(server) as url:
        key = key_at(f"{url}/v1")
        result = validate_key(key)
    assert (result.result, result.status_code) == (UNKNOWN, status)
    key.refresh_from_db()
    assert key.invalid_at is None
    assert server.calls == 1


def test_a_timeout_is_unknown(key_at, settings):
    settings.KEY_VALIDATION_TIMEOUT = 0.2
    with serve(Answers(200, delay=2)) as url:
        key = key_at(f"{url}/v1")
        result = validate_key(key)
    assert result.result == UNKNOWN and result.detail == "could not tell: timed out"


def test_a_previously_invalid_key_stays_invalid_while_the_provider_is_down(fake, key_at):
    key = key_at(f"{fake.url}/v1")
    fake.rejected_keys.add(SECRET)
    validate_key(key)
    key.base_url = f"http://127.0.0.1:{free_port()}/v1"
    key.save()
    assert validate_key(key).result == UNKNOWN
    key.refresh_from_db()
    assert key.invalid_at is not None


def test_the_daily_run_and_command_check_every_active_key(fake, key_at, capsys):
    good = key_at(f"{fake.url}/v1")
    bad = key_at(f"{fake.url}/v1", secret=OTHER, environment="staging")
    fake.rejected_keys.add(OTHER)
    report = validate_all_keys()
    assert {r.key_id: r.result for r in report.results} == {good.pk: VALID, bad.pk: INVALID}

    call_command("validate_keys")
    out = capsys.readouterr().out
    assert f"key {good.pk} alpha/production {good.name} ({good.masked}): valid" in out
    assert f"key {bad.pk} alpha/staging {bad.name} ({bad.masked}): invalid" in out
    assert "2 keys checked: 1 valid, 1 invalid, 0 unknown." in out
    assert SECRET not in out and OTHER not in out


def test_revoked_keys_are_not_checked_daily(fake, key_at):
    key = key_at(f"{fake.url}/v1")
    ProviderKey.objects.filter(pk=key.pk).update(status=ProviderKey.Status.REVOKED)
    assert validate_all_keys().results == []
    assert fake.received == []


def test_admins_validate_through_the_api(fake, key_at, api_as, alice, bob, dave, beta):
    key = key_at(f"{fake.url}/v1")
    url = f"/api/v1/projects/alpha/keys/{key.pk}/validate"
    response = api_as(alice).post(url)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == key.pk and body["result"] == "valid" and body["status_code"] == 200
    assert body["last_validated_at"] and body["invalid_at"] is None
    assert SECRET not in response.content.decode()

    fake.rejected_keys.add(SECRET)
    body = api_as(alice).post(url).json()
    assert body["result"] == "invalid" and body["invalid_at"]

    assert api_as(bob).post(url).status_code == 403  # members cannot
    assert api_as(dave).post(url).status_code == 404  # not his project
    assert api_as(alice).post("/api/v1/projects/alpha/keys/999999/validate").status_code == 404
