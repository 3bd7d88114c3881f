"""GET/POST /api/v1/projects/{slug}/tokens and …/tokens/{id}/revoke."""

from __future__ import annotations

import hashlib

import pytest

from accounts.models import AuditEvent, GatewayToken
from accounts.tokens import create_gateway_token, gateway_token_for

API = "/api/v1"
TOKENS = f"{API}/projects/alpha/tokens"


def test_a_member_creates_a_token_shown_once(alpha, bob, api_as):
    r = api_as(bob).post(TOKENS, {"environment": "staging", "name": "ci"})
    assert r.status_code == 201
    body = r.json()
    token = body["token"]
    assert token.startswith("km_")
    assert body["name"] == "ci"
    assert body["environment"] == "staging"
    assert token.startswith(body["prefix"])

    row = GatewayToken.objects.get(pk=body["id"])
    assert row.created_by == bob
    assert gateway_token_for(token) == row
    event = AuditEvent.objects.get(action="token.create")
    assert (event.actor, event.project, event.ip) == (bob, alpha, "127.0.0.1")
    assert token not in str(event.detail)

    # Never shown again.
    listed = api_as(bob).get(TOKENS)
    assert token not in listed.content.decode()


def test_tokens_are_stored_only_as_sha256_digests(alpha, alice, api_as):
    token = api_as(alice).post(TOKENS, {"environment": "dev", "name": "x"}).json()["token"]
    row = GatewayToken.objects.values().get()
    assert row["digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row)
    assert GatewayToken.objects.filter(digest=hashlib.sha256(token.encode()).hexdigest()).exists()


def test_it_names_a_token_after_its_environment_by_default(alpha, alice, api_as):
    r = api_as(alice).post(TOKENS, {"environment": "dev"})
    assert r.status_code == 201
    assert r.json()["name"] == "dev-token"


def test_it_lists_tokens_without_the_token(alpha, alice, charlie, api_as):
    _, plaintext = create_gateway_token(alpha.environments.get(name="dev"), "ci", by=alice)
    r = api_as(charlie).get(TOKENS)
    assert r.status_code == 200
    [token] = r.json()
    assert set(token) == {
        "id",
        "name",
        "environment",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert (token["name"], token["environment"], token["revoked_at"]) == ("ci", "dev", None)
    assert plaintext not in r.content.decode()


def test_it_names_an_unknown_environment(alpha, alice, api_as):
    r = api_as(alice).post(TOKENS, {"environment": "qa", "name": "x"})
    assert r.status_code == 400
    assert "Unknown environment 'qa'" in r.json()["detail"]
    assert not GatewayToken.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x"}, "environment"),
        ({"environment": None}, "environment"),
        ({"environment": "dev", "name": ["x"]}, "name"),
        ({"environment": "dev", "name": "x" * 101}, "name"),
    ],
)
def test_it_rejects_bad_token_fields(alpha, alice, api_as, body, field):
    r = api_as(alice).post(TOKENS, body)
    assert r.status_code == 422
    assert [e["loc"][-1] for e in r.json()["detail"]] == [field]
    assert not GatewayToken.objects.exists()


def test_an_admin_revokes_any_token(alpha, alice, bob, api_as):
    token, plaintext = create_gateway_token(alpha.environments.get(name="dev"), "b", by=bob)
    r = api_as(alice).post(f"{TOKENS}/{token.pk}/revoke")
    assert r.status_code == 200
    assert r.json()["revoked_at"]
    assert gateway_token_for(plaintext) is None
    assert AuditEvent.objects.filter(action="token.revoke", actor=alice).count() == 1


def test_a_member_cannot_revoke_someone_elses_token(alpha, alice, bob, api_as):
    token, plaintext = create_gateway_token(alpha.environments.get(name="dev"), "a", by=alice)
    r = api_as(bob).post(f"{TOKENS}/{token.pk}/revoke")
    assert r.status_code == 403
    assert "creator" in r.json()["detail"]
    assert gateway_token_for(plaintext) == token


def test_it_does_not_touch_another_projects_token(alpha, beta, alice, dave, api_as):
    theirs, plaintext = create_gateway_token(beta.environments.get(name="dev"), "d", by=dave)
    assert api_as(alice).post(f"{TOKENS}/{theirs.pk}/revoke").status_code == 404
    assert gateway_token_for(plaintext) == theirs
    assert api_as(alice).get(TOKENS).json() == []
