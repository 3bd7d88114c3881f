from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.keys import add_provider_key
from accounts.models import AuditEvent, GatewayToken, Project, ProviderKey
from accounts.tokens import create_gateway_token, gateway_token_for

SECRET = "sk-proj-UIt3stSecretValue0123456789abcdefXyZ9"
OTHER_SECRET = "sk-proj-AnotherSecretValue9876543210fedcbaQ7w2"


def _env(project, name="production"):
    return project.environments.get(name=name)


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


# Project list


def test_the_list_shows_my_projects_with_my_role(as_user, alpha, beta, charlie):
    html = as_user(charlie).get("/projects/").content.decode()
    assert "Alpha" in html
    assert "Viewer" in html
    assert "Beta" not in html


def test_a_new_user_sees_what_to_do_next(as_user, dave):
    html = as_user(dave).get("/projects/").content.decode()
    assert "No projects yet" in html
    assert "Create a project" in html


def test_anyone_logged_in_can_create_a_project(as_user, dave):
    r = as_user(dave).post("/projects/", {"name": "Gamma Shop", "slug": ""})
    assert r.status_code == 302
    assert r.url == "/projects/gamma-shop/"
    project = Project.objects.get(slug="gamma-shop")
    assert project.role_of(dave) == "admin"
    assert "Gamma Shop" in as_user(dave).get(r.url).content.decode()


def test_it_shows_field_errors_for_a_bad_project(as_user, alpha, dave):
    client = as_user(dave)
    r = client.post("/projects/", {"name": "", "slug": ""})
    assert r.status_code == 400
    assert 'id="project-name_error"' in r.content.decode()
    r = client.post("/projects/", {"name": "Another", "slug": "alpha"})
    assert r.status_code == 400
    assert 'id="project-slug_error"' in r.content.decode()
    assert "is taken" in r.content.decode()
    r = client.post("/projects/", {"name": "Ok", "slug": "!!!"})
    assert r.status_code == 400
    assert Project.objects.count() == 1


def test_anonymous_users_are_sent_to_login(client, alpha):
    r = client.get("/projects/alpha/")
    assert r.status_code == 302
    assert r.url.startswith("/accounts/login/")


# Project page: who sees what


def test_a_non_member_gets_404(as_user, alpha, dave):
    client = as_user(dave)
    assert client.get("/projects/alpha/").status_code == 404
    r = client.post("/projects/alpha/tokens/", {"environment": _env(alpha).pk})
    assert r.status_code == 404
    assert not GatewayToken.objects.exists()


def test_admin_sees_every_form(as_user, alpha, alice):
    html = as_user(alice).get("/projects/alpha/").content.decode()
    assert 'action="/projects/alpha/environments/"' in html
    assert 'action="/projects/alpha/keys/"' in html
    assert 'action="/projects/alpha/tokens/"' in html


def test_member_can_create_tokens_but_not_manage_keys(as_user, alpha, alice, bob):
    add_provider_key(_env(alpha), SECRET, by=alice)
    html = as_user(bob).get("/projects/alpha/").content.decode()
    assert 'action="/projects/alpha/tokens/"' in html
    assert 'action="/projects/alpha/keys/"' not in html
    assert "/rotate/" not in html
    assert 'action="/projects/alpha/environments/"' not in html
    r = as_user(bob).post(
        "/projects/alpha/keys/", {"environment": _env(alpha, "dev").pk, "secret": OTHER_SECRET}
    )
    assert r.status_code == 403
    assert ProviderKey.objects.count() == 1


def test_viewer_sees_everything_read_only(as_user, alpha, alice, charlie):
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    create_gateway_token(_env(alpha), "web", by=alice)
    html = as_user(charlie).get("/projects/alpha/").content.decode()
    assert key.masked in html
    assert "web" in html
    assert 'action="/projects/alpha/' not in html
    assert 'type="password"' not in html
    client = as_user(charlie)
    assert (
        client.post("/projects/alpha/tokens/", {"environment": _env(alpha).pk}).status_code == 403
    )
    assert client.post(f"/projects/alpha/keys/{key.pk}/revoke/").status_code == 403
    assert GatewayToken.objects.count() == 1
    assert ProviderKey.objects.get().status == "active"


# Provider keys


def test_adding_a_key_shows_only_its_last_four(as_user, alpha, alice):
    client = as_user(alice)
    r = client.post(
        "/projects/alpha/keys/",
        {
            "environment": _env(alpha).pk,
            "name": "",
            "secret": SECRET,
            "base_url": "",
            "issued_at": "",
        },
    )
    assert r.status_code == 302
    html = client.get("/projects/alpha/").content.decode()
    assert "sk-proj-…XyZ9" in html
    assert SECRET not in html
    assert SECRET[8:-4] not in html
    key = ProviderKey.objects.get()
    assert key.name.startswith("alpha-production-")
    assert AuditEvent.objects.filter(action="key.add", actor=alice).exists()


def test_it_stores_base_url_and_issue_date(as_user, alpha, alice):
    r = as_user(alice).post(
        "/projects/alpha/keys/",
        {
            "environment": _env(alpha, "dev").pk,
            "name": "relay",
            "secret": SECRET,
            "base_url": "https://relay.example.com/v1/",
            "issued_at": "2024-01-15",
        },
    )
    assert r.status_code == 302
    key = ProviderKey.objects.get()
    assert key.base_url == "https://relay.example.com/v1"
    assert timezone.localdate(key.issued_at).isoformat() == "2024-01-15"
    html = as_user(alice).get("/projects/alpha/").content.decode()
    assert f"{key.age_days()} days" in html


def test_a_bad_secret_gets_a_field_error_and_is_not_echoed(as_user, alpha, alice):
    bad = "sk-has spaces in it that are not allowed!!"
    r = as_user(alice).post("/projects/alpha/keys/", {"environment": _env(alpha).pk, "secret": bad})
    assert r.status_code == 400
    html = r.content.decode()
    assert 'id="key-secret_error"' in html
    assert "does not look like an API key" in html
    assert bad not in html
    assert not ProviderKey.objects.exists()


def test_a_bad_secret_and_a_bad_url_are_both_reported(as_user, alpha, alice):
    r = as_user(alice).post(
        "/projects/alpha/keys/",
        {"environment": _env(alpha).pk, "secret": "short", "base_url": "nope"},
    )
    assert r.status_code == 400
    html = r.content.decode()
    assert 'id="key-secret_error"' in html
    assert 'id="key-base_url_error"' in html


def test_a_retiring_key_cannot_be_rotated_again(as_user, alpha, alice):
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    client = as_user(alice)
    assert (
        client.post(f"/projects/alpha/keys/{key.pk}/rotate/", {"secret": OTHER_SECRET}).status_code
        == 302
    )
    r = client.post(f"/projects/alpha/keys/{key.pk}/rotate/", {"secret": SECRET + "x"})
    assert r.status_code == 400
    assert ProviderKey.objects.filter(status="active").count() == 1


def test_a_failed_submit_never_echoes_a_valid_secret(as_user, alpha, alice):
    # A valid secret with a bad other field: the form comes back with the secret empty.
    r = as_user(alice).post(
        "/projects/alpha/keys/",
        {
            "environment": _env(alpha).pk,
            "secret": SECRET,
            "base_url": "not a url",
            "issued_at": "yesterday",
        },
    )
    assert r.status_code == 400
    html = r.content.decode()
    assert 'id="key-base_url_error"' in html
    assert 'id="key-issued_at_error"' in html
    assert SECRET not in html


def test_it_rejects_a_future_issue_date_and_a_second_active_key(as_user, alpha, alice):
    client = as_user(alice)
    future = (timezone.localdate() + timedelta(days=3)).isoformat()
    r = client.post(
        "/projects/alpha/keys/",
        {"environment": _env(alpha).pk, "secret": SECRET, "issued_at": future},
    )
    assert r.status_code == 400
    assert 'id="key-issued_at_error"' in r.content.decode()
    add_provider_key(_env(alpha), SECRET, by=alice)
    r = client.post(
        "/projects/alpha/keys/", {"environment": _env(alpha).pk, "secret": OTHER_SECRET}
    )
    assert r.status_code == 400
    assert 'id="key-environment_error"' in r.content.decode()
    assert "already has an active key" in r.content.decode()
    assert OTHER_SECRET not in r.content.decode()


def test_it_rejects_an_environment_of_another_project(as_user, alpha, beta, alice):
    r = as_user(alice).post(
        "/projects/alpha/keys/", {"environment": _env(beta).pk, "secret": SECRET}
    )
    assert r.status_code == 400
    assert 'id="key-environment_error"' in r.content.decode()
    assert not ProviderKey.objects.exists()


def test_secrets_never_reach_the_logs(as_user, alpha, alice, caplog):
    with caplog.at_level(logging.DEBUG):
        as_user(alice).post(
            "/projects/alpha/keys/", {"environment": _env(alpha).pk, "secret": SECRET}
        )
        as_user(alice).post(
            "/projects/alpha/keys/", {"environment": _env(alpha).pk, "secret": OTHER_SECRET}
        )
    assert SECRET not in caplog.text
    assert OTHER_SECRET not in caplog.text


def test_admin_rotates_a_key(as_user, alpha, alice, settings):
    settings.ROTATION_GRACE_HOURS = 6
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    client = as_user(alice)
    assert "keeps working for 6 hours" in client.get("/projects/alpha/").content.decode()
    r = client.post(f"/projects/alpha/keys/{key.pk}/rotate/", {"secret": OTHER_SECRET})
    assert r.status_code == 302
    key.refresh_from_db()
    assert key.status == "retiring"
    assert key.retiring_until - timezone.now() < timedelta(hours=6, minutes=1)
    html = client.get("/projects/alpha/").content.decode()
    assert "keeps working until" in html
    assert "sk-proj-…Q7w2" in html
    assert "retiring" in html
    assert OTHER_SECRET not in html


def test_rotating_with_the_same_secret_shows_the_error_at_that_key(as_user, alpha, alice):
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    r = as_user(alice).post(f"/projects/alpha/keys/{key.pk}/rotate/", {"secret": SECRET})
    assert r.status_code == 400
    html = r.content.decode()
    assert f'id="rotate-{key.pk}-secret_error"' in html
    assert "same as the current one" in html
    assert SECRET not in html
    r = as_user(alice).post(f"/projects/alpha/keys/{key.pk}/rotate/", {"secret": ""})
    assert r.status_code == 400


def test_admin_revokes_a_key(as_user, alpha, alice):
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    r = as_user(alice).post(f"/projects/alpha/keys/{key.pk}/revoke/")
    assert r.status_code == 302
    key.refresh_from_db()
    assert key.status == "revoked"
    html = as_user(alice).get("/projects/alpha/").content.decode()
    assert f"/keys/{key.pk}/revoke/" not in html


def test_a_key_of_another_project_is_404(as_user, alpha, beta, alice, dave):
    key = add_provider_key(_env(beta), SECRET, by=dave)
    r = as_user(alice).post(f"/projects/alpha/keys/{key.pk}/revoke/")
    assert r.status_code == 404
    key.refresh_from_db()
    assert key.status == "active"


# Gateway tokens


def test_a_member_creates_a_token_and_sees_it_once(as_user, alpha, bob, settings):
    settings.SITE_URL = "https://keymeter.example.com"
    client = as_user(bob)
    r = client.post(
        "/projects/alpha/tokens/", {"environment": _env(alpha, "staging").pk, "name": "web-backend"}
    )
    assert r.status_code == 200
    html = r.content.decode()
    token = GatewayToken.objects.get()
    plaintext = html.split('id="new-token">')[1].split("<")[0]
    assert plaintext.startswith("km_")
    assert gateway_token_for(plaintext) == token
    assert 'base_url="https://keymeter.example.com/v1"' in html
    assert f'api_key="{plaintext}"' in html
    assert "no-store" in r["Cache-Control"]
    # Not on the project page, not on a reload.
    page = client.get("/projects/alpha/").content.decode()
    assert "web-backend" in page
    assert token.prefix + "…" in page
    assert plaintext not in page
    assert plaintext not in client.get("/projects/alpha/").content.decode()


def test_a_token_form_without_an_environment_shows_an_error(as_user, alpha, bob):
    r = as_user(bob).post("/projects/alpha/tokens/", {"environment": "999999", "name": "x"})
    assert r.status_code == 400
    assert 'id="token-environment_error"' in r.content.decode()
    r = as_user(bob).post("/projects/alpha/tokens/", {"environment": "abc"})
    assert r.status_code == 400
    assert not GatewayToken.objects.exists()


def test_a_member_revokes_their_own_token(as_user, alpha, bob):
    token, plaintext = create_gateway_token(_env(alpha), "ci", by=bob)
    r = as_user(bob).post(f"/projects/alpha/tokens/{token.pk}/revoke/")
    assert r.status_code == 302
    assert gateway_token_for(plaintext) is None
    html = as_user(bob).get("/projects/alpha/").content.decode()
    assert "revoked" in html
    assert f"/tokens/{token.pk}/revoke/" not in html


def test_only_an_admin_revokes_someone_elses_token(as_user, alpha, alice, bob):
    token, plaintext = create_gateway_token(_env(alpha), "shared", by=alice)
    html = as_user(bob).get("/projects/alpha/").content.decode()
    assert f"/tokens/{token.pk}/revoke/" not in html
    assert as_user(bob).post(f"/projects/alpha/tokens/{token.pk}/revoke/").status_code == 403
    assert gateway_token_for(plaintext) == token
    mine, _ = create_gateway_token(_env(alpha), "bobs", by=bob)
    html = as_user(alice).get("/projects/alpha/").content.decode()
    assert f"/tokens/{mine.pk}/revoke/" in html
    assert as_user(alice).post(f"/projects/alpha/tokens/{mine.pk}/revoke/").status_code == 302


# Environments


def test_admin_adds_an_environment(as_user, alpha, alice):
    r = as_user(alice).post("/projects/alpha/environments/", {"name": "Canary"})
    assert r.status_code == 302
    assert alpha.environments.filter(name="canary").exists()
    r = as_user(alice).post("/projects/alpha/environments/", {"name": "canary"})
    assert r.status_code == 400
    assert 'id="env-name_error"' in r.content.decode()
    assert "already exists" in r.content.decode()


def test_get_on_a_post_only_url_is_405(as_user, alpha, alice):
    assert as_user(alice).get("/projects/alpha/tokens/").status_code == 405
