"""The accounts JSON API as a whole: auth, the role matrix, error shapes, OpenAPI,
and the create_api_token command whose token it accepts."""

from __future__ import annotations

import io
import secrets

import pytest
from django.core.management import CommandError, call_command

from accounts.keys import add_provider_key
from accounts.models import AuditEvent, ProviderKey
from accounts.tokens import create_api_token, create_gateway_token, revoke_api_token
from tests.conftest import ApiClient

API = "/api/v1"


def new_secret() -> str:
    return "sk-proj-" + secrets.token_urlsafe(36)


# ---- authentication --------------------------------------------------------------------


def test_it_rejects_a_missing_token(alpha, api_as):
    r = api_as(None).get(f"{API}/projects")
    assert r.status_code == 401
    assert "kmu_" in r.json()["detail"]


@pytest.mark.parametrize(
    "header",
    ["Bearer kmu_not-a-real-token", "Bearer ", "Basic YWxpY2U6cHc=", "kmu_without_bearer"],
)
def test_it_rejects_an_invalid_token(alpha, header):
    r = ApiClient().get(f"{API}/projects", HTTP_AUTHORIZATION=header)
    assert r.status_code == 401


def test_it_rejects_a_revoked_token(alpha, alice):
    token, plaintext = create_api_token(alice, "laptop")
    client = ApiClient(plaintext)
    assert client.get(f"{API}/projects").status_code == 200
    revoke_api_token(token)
    r = client.get(f"{API}/projects")
    assert r.status_code == 401
    assert client.post(f"{API}/projects", {"name": "Gamma"}).status_code == 401


def test_it_rejects_a_token_of_a_deactivated_user(alpha, alice):
    _, plaintext = create_api_token(alice)
    alice.is_active = False
    alice.save()
    assert ApiClient(plaintext).get(f"{API}/projects").status_code == 401


def test_it_rejects_a_gateway_token(alpha):
    _, km = create_gateway_token(alpha.environments.get(name="production"), "ci")
    assert ApiClient(km).get(f"{API}/projects").status_code == 401


# ---- the role x endpoint matrix ---------------------------------------------------------


@pytest.fixture
def alpha_state(alpha, alice, bob):
    """alpha with an active production key and a gateway token each by alice and bob."""
    key = add_provider_key(alpha.environments.get(name="production"), new_secret(), by=alice)
    alice_token, _ = create_gateway_token(alpha.environments.get(name="dev"), "a", by=alice)
    bob_token, _ = create_gateway_token(alpha.environments.get(name="dev"), "b", by=bob)
    return {"key": key, "alice_token": alice_token, "bob_token": bob_token}


def _call(client: ApiClient, endpoint: str, state: dict):
    key, alice_token = state["key"], state["alice_token"]
    p = f"{API}/projects/alpha"
    calls = {
        "get project": lambda: client.get(p),
        "add environment": lambda: client.post(f"{p}/environments", {"name": "qa"}),
        "list keys": lambda: client.get(f"{p}/keys"),
        "add key": lambda: client.post(
            f"{p}/keys", {"environment": "staging", "secret": new_secret()}
        ),
        "rotate key": lambda: client.post(f"{p}/keys/{key.pk}/rotate", {"secret": new_secret()}),
        "revoke key": lambda: client.post(f"{p}/keys/{key.pk}/revoke"),
        "list tokens": lambda: client.get(f"{p}/tokens"),
        "create token": lambda: client.post(f"{p}/tokens", {"environment": "dev", "name": "x"}),
        "revoke alice's token": lambda: client.post(f"{p}/tokens/{alice_token.pk}/revoke"),
    }
    return calls[endpoint]()


# Expected status for alice (admin), bob (member), charlie (viewer), dave (not a member).
MATRIX = {
    "get project": (200, 200, 200, 404),
    "add environment": (201, 403, 403, 404),
    "list keys": (200, 200, 200, 404),
    "add key": (201, 403, 403, 404),
    "rotate key": (200, 403, 403, 404),
    "revoke key": (200, 403, 403, 404),
    "list tokens": (200, 200, 200, 404),
    "create token": (201, 201, 403, 404),
    "revoke alice's token": (200, 403, 403, 404),
}
USERS = ("alice", "bob", "charlie", "dave")


@pytest.mark.parametrize("endpoint", list(MATRIX))
@pytest.mark.parametrize("who", USERS)
def test_role_matrix(request, endpoint, who, alpha_state, beta, api_as):
    user = request.getfixturevalue(who)
    expected = MATRIX[endpoint][USERS.index(who)]
    client = api_as(user)
    events_before = AuditEvent.objects.count()
    keys_before = list(ProviderKey.objects.values_list("pk", "status").order_by("pk"))

    r = _call(client, endpoint, alpha_state)

    assert r.status_code == expected, r.content
    assert isinstance(r.json(), (dict, list))
    if expected >= 400:
        # A refused call says why and changes nothing.
        assert r.json()["detail"]
        assert AuditEvent.objects.count() == events_before
        assert list(ProviderKey.objects.values_list("pk", "status").order_by("pk")) == keys_before
    if expected == 404:
        # Same answer as for a project that does not exist: alpha's existence does not leak.
        assert r.json() == client.get(f"{API}/projects/nope").json()


def test_a_member_may_revoke_their_own_token(alpha_state, bob, api_as):
    token = alpha_state["bob_token"]
    r = api_as(bob).post(f"{API}/projects/alpha/tokens/{token.pk}/revoke")
    assert r.status_code == 200
    assert r.json()["revoked_at"]


# ---- error shapes -----------------------------------------------------------------------


def test_it_answers_malformed_json_with_400(alpha, alice, api_as):
    r = api_as(alice).post(f"{API}/projects", '{"name": "Gamma",', content_type="application/json")
    assert r.status_code == 400
    assert "parse" in r.json()["detail"]


@pytest.mark.parametrize("body", ["", "[]", '"Gamma"', "42", "null"])
def test_it_answers_a_body_that_is_not_an_object_with_422(alpha, alice, api_as, body):
    r = api_as(alice).post(f"{API}/projects", body, content_type="application/json")
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"]


def test_validation_errors_name_the_field_without_echoing_values(alpha, alice, api_as):
    secret = new_secret()
    r = api_as(alice).post(
        f"{API}/projects/alpha/keys", {"environment": ["dev"], "secret": [secret], "name": 7}
    )
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert {tuple(e["loc"]) for e in errors} == {
        ("body", "data", "environment"),
        ("body", "data", "secret"),
        ("body", "data", "name"),
    }
    for error in errors:
        assert set(error) == {"loc", "msg", "type"}
    assert secret not in r.content.decode()


def test_a_huge_id_is_not_found_rather_than_an_error(alpha, alice, api_as):
    r = api_as(alice).post(f"{API}/projects/alpha/keys/99999999999999999999/revoke")
    assert r.status_code == 404


def test_a_path_with_a_nul_byte_is_not_found(alpha, alice, api_as):
    assert api_as(alice).get(f"{API}/projects/al%00pha").status_code == 404


# ---- OpenAPI ----------------------------------------------------------------------------


def test_openapi_lists_every_endpoint_with_response_schemas(db):
    r = ApiClient().get(f"{API}/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    expected = {
        ("get", "/api/v1/projects"): "200",
        ("post", "/api/v1/projects"): "201",
        ("get", "/api/v1/projects/{slug}"): "200",
        ("post", "/api/v1/projects/{slug}/environments"): "201",
        ("get", "/api/v1/projects/{slug}/keys"): "200",
        ("post", "/api/v1/projects/{slug}/keys"): "201",
        ("post", "/api/v1/projects/{slug}/keys/{id}/rotate"): "200",
        ("post", "/api/v1/projects/{slug}/keys/{id}/revoke"): "200",
        ("get", "/api/v1/projects/{slug}/tokens"): "200",
        ("post", "/api/v1/projects/{slug}/tokens"): "201",
        ("post", "/api/v1/projects/{slug}/tokens/{id}/revoke"): "200",
    }
    for (method, path), status in expected.items():
        responses = paths[path][method]["responses"]
        assert responses[status]["content"]["application/json"]["schema"], (method, path)
    key_out = r.json()["components"]["schemas"]["KeyOut"]["properties"]
    assert "secret" not in key_out and "fingerprint" not in key_out


# ---- manage.py create_api_token ---------------------------------------------------------


def test_create_api_token_prints_a_token_that_works(alpha, alice):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "Alice@Example.org", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert token.startswith("kmu_")
    assert "shown only this once" in err.getvalue()
    r = ApiClient(token).get(f"{API}/projects")
    assert r.status_code == 200
    assert [p["slug"] for p in r.json()] == ["alpha"]


def test_create_api_token_rejects_an_unknown_email(db):
    with pytest.raises(CommandError, match="nobody@example.org"):
        call_command("create_api_token", "nobody@example.org", stdout=io.StringIO())
