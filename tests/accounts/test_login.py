from __future__ import annotations

import logging
import time

import pytest

from tests.conftest import PASSWORD

LOGIN = "/accounts/login/"


def _fail(client, email="alice@example.org", **extra):
    return client.post(LOGIN, {"email": email, "password": "wrong password"}, **extra)


@pytest.mark.django_db
def test_it_shows_the_login_form(client):
    r = client.get(LOGIN)
    assert r.status_code == 200
    html = r.content.decode()
    assert '<label for="id_email">' in html
    assert 'type="password"' in html


def test_it_logs_in_with_email_and_password(client, alice):
    r = client.post(LOGIN, {"email": "Alice@Example.org", "password": PASSWORD})
    assert r.status_code == 302
    assert r.url == "/overview/"
    assert client.get("/overview/").status_code == 200


def test_it_follows_a_safe_next_url_only(client, alice):
    r = client.post(LOGIN + "?next=/accounts/tokens/", {"email": alice.email, "password": PASSWORD})
    assert r.url == "/accounts/tokens/"
    client.logout()
    r = client.post(
        LOGIN, {"email": alice.email, "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert r.url == "/overview/"


def test_it_rejects_a_wrong_password_without_echoing_it(client, alice, caplog):
    with caplog.at_level(logging.WARNING, logger="keymeter.login"):
        r = _fail(client)
    assert r.status_code == 400
    html = r.content.decode()
    assert "do not match" in html
    assert "wrong password" not in html
    assert "_auth_user_id" not in client.session
    # The failure is logged with the email, never the password.
    assert "alice@example.org" in caplog.text
    assert "wrong password" not in caplog.text


def test_it_shows_field_errors_for_an_empty_form(client, db):
    r = client.post(LOGIN, {"email": "not-an-email", "password": ""})
    assert r.status_code == 400
    html = r.content.decode()
    assert 'id="id_email_error"' in html
    assert 'id="id_password_error"' in html


def test_it_throttles_after_five_failures_for_one_email(client, alice, settings):
    settings.LOGIN_THROTTLE_ATTEMPTS = 5
    for _ in range(5):
        assert _fail(client).status_code == 400
    # Even the right password is refused now, with a message saying why.
    r = client.post(LOGIN, {"email": alice.email, "password": PASSWORD})
    assert r.status_code == 429
    assert "Too many failed attempts" in r.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_throttles_one_ip_across_emails(client, alice, bob, settings):
    settings.LOGIN_THROTTLE_ATTEMPTS = 5
    for i in range(5):
        _fail(client, email=f"nobody{i}@example.org", REMOTE_ADDR="203.0.113.7")
    r = client.post(LOGIN, {"email": bob.email, "password": PASSWORD}, REMOTE_ADDR="203.0.113.7")
    assert r.status_code == 429
    # Another address is not affected.
    r = client.post(LOGIN, {"email": bob.email, "password": PASSWORD}, REMOTE_ADDR="203.0.113.8")
    assert r.status_code == 302


def test_it_lets_the_user_in_after_the_window(client, alice, settings):
    settings.LOGIN_THROTTLE_ATTEMPTS = 2
    settings.LOGIN_THROTTLE_WINDOW = 1
    _fail(client)
    _fail(client)
    assert client.post(LOGIN, {"email": alice.email, "password": PASSWORD}).status_code == 429
    time.sleep(1.2)  # the Redis keys expire with the window
    r = client.post(LOGIN, {"email": alice.email, "password": PASSWORD})
    assert r.status_code == 302


def test_a_success_clears_the_email_counter(client, alice, settings):
    settings.LOGIN_THROTTLE_ATTEMPTS = 3
    _fail(client)
    _fail(client)
    assert client.post(LOGIN, {"email": alice.email, "password": PASSWORD}).status_code == 302
    client.logout()
    _fail(client, REMOTE_ADDR="198.51.100.1")
    _fail(client, REMOTE_ADDR="198.51.100.2")
    r = client.post(LOGIN, {"email": alice.email, "password": PASSWORD}, REMOTE_ADDR="198.51.100.3")
    assert r.status_code == 302


def test_logout_needs_post(client, alice):
    client.force_login(alice)
    assert client.get("/accounts/logout/").status_code == 405
    r = client.post("/accounts/logout/")
    assert r.status_code == 302
    assert client.get("/projects/").status_code == 302


def test_the_layout_has_navigation_and_a_language_switcher(client, alice):
    client.force_login(alice)
    html = client.get("/projects/").content.decode()
    assert "alice@example.org" in html
    assert 'action="/i18n/setlang/"' in html
    assert 'value="zh-hans"' in html
    assert "/static/css/keymeter.css" in html
    assert "Log out" in html


def test_switching_language_sets_the_cookie(client, alice):
    client.force_login(alice)
    r = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/projects/"})
    assert r.status_code == 302
    assert r.url == "/projects/"
    assert client.cookies["django_language"].value == "zh-hans"
