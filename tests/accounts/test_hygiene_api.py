"""GET /api/v1/keys/hygiene: every key and token the caller may see, with age, stage, flags."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.keys import add_provider_key
from accounts.models import ProviderKey
from accounts.tokens import create_gateway_token
from tests.conftest import make_user

ALPHA_SECRET = "sk-proj-" + "Ab1Cd2Ef3G" * 4 + "T3BlbkFJ" + "Hi4Jk5Lm6N" * 4
BETA_SECRET = "sk-proj-" + "Op7Qr8St9U" * 4 + "T3BlbkFJ" + "Vw0Xy1Za2B" * 4
URL = "/api/v1/keys/hygiene"


@pytest.fixture
def keys(alpha, beta, alice, dave):
    old = timezone.now() - timedelta(days=95)
    prod = add_provider_key(alpha.environments.get(name="production"), ALPHA_SECRET,
                            issued_at=old, by=alice)  # fmt: skip
    # The same secret in a second environment of alpha: both are "shared".
    staging = add_provider_key(alpha.environments.get(name="staging"), ALPHA_SECRET, by=alice)
    token, _ = create_gateway_token(alpha.environments.get(name="production"), "ci", by=alice)
    other = add_provider_key(beta.environments.get(name="production"), BETA_SECRET, by=dave)
    return {"prod": prod, "staging": staging, "token": token, "beta": other}


def test_a_member_sees_every_key_and_token_of_their_projects(api_as, alice, keys):
    response = api_as(alice).get(URL)
    assert response.status_code == 200
    rows = {(r["kind"], r["id"]): r for r in response.json()}
    assert set(rows) == {("api", keys["prod"].pk), ("api", keys["staging"].pk),
                         ("token", keys["token"].pk)}  # fmt: skip
    prod = rows[("api", keys["prod"].pk)]
    assert prod["project"] == "alpha" and prod["environment"] == "production"
    assert prod["age_days"] == 95 and prod["stage"] == "overdue"
    assert prod["flags"] == ["shared"] and prod["masked"] == keys["prod"].masked
    assert rows[("api", keys["staging"].pk)]["stage"] == "ok"
    token = rows[("token", keys["token"].pk)]
    assert token["stage"] == "ok" and token["masked"] == f"{keys['token'].prefix}…"
    body = response.content.decode()
    assert ALPHA_SECRET not in body and ALPHA_SECRET[8:-4] not in body
    assert "secret" not in body


def test_viewers_see_the_same_as_admins(api_as, charlie, alice, keys):
    assert api_as(charlie).get(URL).json() == api_as(alice).get(URL).json()


def test_no_one_sees_keys_of_projects_they_are_not_in(api_as, dave, keys):
    rows = api_as(dave).get(URL).json()
    assert [(r["project"], r["id"]) for r in rows] == [("beta", keys["beta"].pk)]
    # Alpha's secret is on no key of beta's: nothing is shared there.
    assert rows[0]["flags"] == []


def test_a_user_in_no_project_sees_nothing(api_as, keys):
    eve = make_user("eve@example.org")
    assert api_as(eve).get(URL).json() == []


def test_staff_see_every_project(api_as, keys):
    root = make_user("root@example.org", is_staff=True)
    projects = {r["project"] for r in api_as(root).get(URL).json()}
    assert projects == {"alpha", "beta"}


def test_it_needs_an_api_token(api_as, keys):
    assert api_as(None).get(URL).status_code == 401


def test_flags_show_invalid_and_leaked_keys(api_as, alice, keys):
    ProviderKey.objects.filter(pk=keys["prod"].pk).update(
        invalid_at=timezone.now(), leaked_at=timezone.now()
    )
    rows = {r["id"]: r for r in api_as(alice).get(URL).json() if r["kind"] == "api"}
    assert rows[keys["prod"].pk]["flags"] == ["shared", "invalid", "leaked"]
