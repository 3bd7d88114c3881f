"""GET/POST /api/v1/projects/{slug}/keys, …/keys/{id}/rotate and …/keys/{id}/revoke."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.keys import add_provider_key, rotate_key
from accounts.models import AuditEvent, ProviderKey

API = "/api/v1"
KEYS = f"{API}/projects/alpha/keys"
KEY_FIELDS = {
    "id",
    "name",
    "environment",
    "provider",
    "kind",
    "base_url",
    "prefix",
    "last4",
    "masked",
    "status",
    "issued_at",
    "age_days",
    "last_used_at",
    "retiring_until",
    "created_at",
}


def new_secret() -> str:
    return "sk-proj-" + secrets.token_urlsafe(36)


@pytest.fixture
def admin_api(alpha, alice, api_as):
    return api_as(alice)


def test_an_admin_adds_a_key(alpha, alice, admin_api):
    secret = new_secret()
    r = admin_api.post(KEYS, {"environment": "production", "name": "main", "secret": secret})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == KEY_FIELDS
    assert body["environment"] == "production"
    assert body["name"] == "main"
    assert body["prefix"] == "sk-proj-"
    assert body["last4"] == secret[-4:]
    assert body["masked"] == f"sk-proj-…{secret[-4:]}"
    assert body["status"] == "active"
    assert body["base_url"] == "https://api.openai.com/v1"
    assert body["age_days"] == 0
    assert secret not in r.content.decode()

    key = ProviderKey.objects.get(pk=body["id"])
    assert key.reveal_secret() == secret
    assert secret not in key.secret_encrypted
    event = AuditEvent.objects.get(action="key.add")
    assert (event.actor, event.project, event.ip) == (alice, alpha, "127.0.0.1")
    assert secret not in str(event.detail)


def test_it_names_a_key_by_project_environment_and_day(admin_api):
    r = admin_api.post(KEYS, {"environment": "staging", "secret": new_secret()})
    assert r.status_code == 201
    assert r.json()["name"] == f"alpha-staging-{timezone.localdate():%Y%m%d}"


def test_it_keeps_base_url_and_issue_date(admin_api):
    issued = timezone.now() - timedelta(days=100, hours=1)
    r = admin_api.post(
        KEYS,
        {
            "environment": "dev",
            "secret": new_secret(),
            "base_url": "https://relay.example.com/v1/",
            "issued_at": issued.isoformat(),
        },
    )
    assert r.status_code == 201
    assert r.json()["base_url"] == "https://relay.example.com/v1"
    assert r.json()["age_days"] == 100
    assert ProviderKey.objects.get().issued_at == issued


def test_it_reads_an_issue_date_without_timezone_in_the_site_timezone(admin_api):
    r = admin_api.post(
        KEYS, {"environment": "dev", "secret": new_secret(), "issued_at": "2025-01-02T03:04:05"}
    )
    assert r.status_code == 201
    assert timezone.is_aware(ProviderKey.objects.get().issued_at)


def test_it_refuses_a_second_active_key_with_409(alpha, admin_api):
    first = admin_api.post(KEYS, {"environment": "production", "secret": new_secret()})
    r = admin_api.post(KEYS, {"environment": "production", "secret": new_secret()})
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert "already has an active key" in detail
    assert first.json()["masked"] in detail
    assert ProviderKey.objects.count() == 1


def test_it_names_an_unknown_environment(admin_api):
    r = admin_api.post(KEYS, {"environment": "prod", "secret": new_secret()})
    assert r.status_code == 400
    assert "Unknown environment 'prod'" in r.json()["detail"]
    assert "production" in r.json()["detail"]
    assert not ProviderKey.objects.exists()


def test_it_rejects_a_future_issue_date(admin_api):
    future = (timezone.now() + timedelta(days=2)).isoformat()
    r = admin_api.post(KEYS, {"environment": "dev", "secret": new_secret(), "issued_at": future})
    assert r.status_code == 400
    assert "future" in r.json()["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"secret": "sk-proj-" + "a" * 40}, "environment"),
        ({"environment": "dev"}, "secret"),
        ({"environment": "dev", "secret": 1234567890123456789012345}, "secret"),
        ({"environment": 3, "secret": "sk-proj-" + "a" * 40}, "environment"),
        ({"environment": "dev", "secret": "sk-proj-" + "a" * 40, "issued_at": "yesterday"}, None),
        ({"environment": "dev", "secret": "sk-proj-" + "a" * 40, "issued_at": "0001-01-01"}, None),
        ({"environment": "dev", "secret": "sk-proj-" + "a" * 40, "base_url": "ftp://x"}, None),
        ({"environment": "dev", "secret": "sk-proj-" + "a" * 40, "base_url": "relay"}, None),
        ({"environment": "dev", "secret": "sk-proj-" + "a" * 40, "name": "n" * 101}, "name"),
        ({"environment": "d\x00v", "secret": "sk-proj-" + "a" * 40}, "environment"),
    ],
)
def test_it_rejects_bad_key_fields_with_422(admin_api, body, field):
    r = admin_api.post(KEYS, body)
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert len(errors) == 1
    expected = field or next(k for k in ("issued_at", "base_url") if k in body)
    assert errors[0]["loc"][-1] == expected
    assert not ProviderKey.objects.exists()


@pytest.mark.parametrize(
    "secret",
    ["sk-short", "sk-proj-has a space in the middle of it", "sk-" + "a" * 600, "   "],
)
def test_it_rejects_a_secret_of_the_wrong_shape(admin_api, secret):
    r = admin_api.post(KEYS, {"environment": "dev", "secret": secret})
    assert r.status_code == 400
    assert "does not look like an API key" in r.json()["detail"]
    if secret.strip():
        assert secret.strip() not in r.content.decode()
    assert not ProviderKey.objects.exists()


def test_it_lists_keys_without_secrets(alpha, alice, charlie, api_as):
    secret = new_secret()
    add_provider_key(alpha.environments.get(name="production"), secret, by=alice)
    r = api_as(charlie).get(KEYS)
    assert r.status_code == 200
    [key] = r.json()
    assert set(key) == KEY_FIELDS
    text = r.content.decode()
    stored = ProviderKey.objects.get()
    for hidden in (secret, stored.secret_encrypted, stored.fingerprint):
        assert hidden not in text


def test_it_lists_only_this_projects_keys(alpha, beta, alice, dave, api_as):
    add_provider_key(beta.environments.get(name="dev"), new_secret(), by=dave)
    assert api_as(alice).get(KEYS).json() == []


def test_rotate_makes_the_new_key_active_and_retires_the_old_one(alpha, alice, admin_api):
    old_secret, new = new_secret(), new_secret()
    old = add_provider_key(alpha.environments.get(name="production"), old_secret, by=alice)

    r = admin_api.post(f"{KEYS}/{old.pk}/rotate", {"secret": new})

    assert r.status_code == 200
    body = r.json()
    assert body["id"] != old.pk
    assert body["status"] == "active"
    assert body["last4"] == new[-4:]
    assert body["environment"] == "production"
    assert new not in r.content.decode() and old_secret not in r.content.decode()

    old.refresh_from_db()
    assert old.status == ProviderKey.Status.RETIRING
    assert old.replaced_by_id == body["id"]
    expected_end = timezone.now() + timedelta(hours=24)
    assert abs((old.retiring_until - expected_end).total_seconds()) < 60
    assert alpha.environments.get(name="production").active_key().reveal_secret() == new
    assert AuditEvent.objects.filter(action="key.rotate", actor=alice).count() == 1

    listed = {k["id"]: k for k in admin_api.get(KEYS).json()}
    assert listed[old.pk]["status"] == "retiring"
    assert listed[old.pk]["retiring_until"]


def test_it_refuses_to_rotate_a_key_twice(alpha, alice, admin_api):
    old = add_provider_key(alpha.environments.get(name="production"), new_secret(), by=alice)
    rotate_key(old, new_secret(), by=alice)
    r = admin_api.post(f"{KEYS}/{old.pk}/rotate", {"secret": new_secret()})
    assert r.status_code == 409
    assert "Only the active key can be rotated" in r.json()["detail"]
    assert ProviderKey.objects.count() == 2


def test_it_refuses_to_rotate_a_revoked_key(alpha, alice, admin_api):
    key = add_provider_key(alpha.environments.get(name="production"), new_secret(), by=alice)
    assert admin_api.post(f"{KEYS}/{key.pk}/revoke").status_code == 200
    r = admin_api.post(f"{KEYS}/{key.pk}/rotate", {"secret": new_secret()})
    assert r.status_code == 409
    assert "revoked" in r.json()["detail"]


def test_it_refuses_to_rotate_to_the_same_secret(alpha, alice, admin_api):
    secret = new_secret()
    key = add_provider_key(alpha.environments.get(name="production"), secret, by=alice)
    r = admin_api.post(f"{KEYS}/{key.pk}/rotate", {"secret": secret})
    assert r.status_code == 400
    assert "same as the current one" in r.json()["detail"]
    assert secret not in r.content.decode()


@pytest.mark.parametrize("body", [{}, {"secret": None}, {"secret": "too-short"}])
def test_it_rejects_a_bad_rotate_body(alpha, alice, admin_api, body):
    key = add_provider_key(alpha.environments.get(name="production"), new_secret(), by=alice)
    r = admin_api.post(f"{KEYS}/{key.pk}/rotate", body)
    assert r.status_code in (400, 422)
    assert r.json()["detail"]
    key.refresh_from_db()
    assert key.status == ProviderKey.Status.ACTIVE


def test_it_does_not_touch_another_projects_key(alpha, beta, dave, admin_api):
    theirs = add_provider_key(beta.environments.get(name="dev"), new_secret(), by=dave)
    assert admin_api.post(f"{KEYS}/{theirs.pk}/rotate", {"secret": new_secret()}).status_code == 404
    assert admin_api.post(f"{KEYS}/{theirs.pk}/revoke").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == ProviderKey.Status.ACTIVE


def test_revoke_stops_a_key_at_once(alpha, alice, admin_api):
    key = add_provider_key(alpha.environments.get(name="production"), new_secret(), by=alice)
    r = admin_api.post(f"{KEYS}/{key.pk}/revoke")
    assert r.status_code == 200
    assert r.json()["status"] == "revoked"
    assert alpha.environments.get(name="production").active_key() is None
    assert AuditEvent.objects.filter(action="key.revoke", actor=alice).count() == 1
    # Then a new key may be added to the environment.
    r = admin_api.post(KEYS, {"environment": "production", "secret": new_secret()})
    assert r.status_code == 201


def test_the_secret_never_appears_in_any_response(alpha, alice, charlie, api_as):
    """Every key endpoint, good calls and bad ones, with one recognisable secret."""
    secret = new_secret()
    admin, viewer = api_as(alice), api_as(charlie)
    responses = [
        admin.post(KEYS, {"environment": "dev", "secret": secret, "name": "x" * 101}),
        admin.post(KEYS, {"environment": "nope", "secret": secret}),
        admin.post(KEYS, {"environment": "dev", "secret": [secret]}),
        admin.post(KEYS, [{"environment": "dev", "secret": secret}]),
        admin.post(KEYS, {"environment": "dev", "secret": secret + " tail"}),
        admin.post(KEYS, {"environment": "dev", "secret": secret, "issued_at": "2999-01-01"}),
        admin.post(KEYS, {"environment": "dev", "secret": secret, "base_url": secret}),
        viewer.post(KEYS, {"environment": "dev", "secret": secret}),
        admin.post(KEYS, {"environment": "dev", "secret": secret}),
        admin.post(KEYS, {"environment": "dev", "secret": secret}),  # 409
        admin.get(KEYS),
        viewer.get(KEYS),
    ]
    key_id = ProviderKey.objects.get().pk
    responses += [
        admin.post(f"{KEYS}/{key_id}/rotate", {"secret": secret}),  # same secret
        admin.post(f"{KEYS}/{key_id}/rotate", {"secret": {"value": secret}}),
        admin.get(f"{API}/openapi.json"),
    ]
    statuses = sorted({r.status_code for r in responses})
    assert statuses == [200, 201, 400, 403, 409, 422]
    for r in responses:
        assert secret not in r.content.decode(), (r.status_code, r.content)
    assert not AuditEvent.objects.filter(detail__icontains=secret[-12:]).exists()
