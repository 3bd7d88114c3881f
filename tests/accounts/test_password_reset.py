"""Password reset by email: request → email with a link → new password → login."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.conftest import PASSWORD, make_user

NEW_PASSWORD = "a brand new passphrase 42"
RESET_URL = "/accounts/password/reset/"


def _link(body: str) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/password/reset/[^/\s]+/[^/\s]+/)", body)
    assert match, body
    return match.group(1)


def _without_csrf(content: bytes) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", content.decode())


def test_the_login_page_links_to_the_reset(client, db):
    response = client.get(reverse("accounts:login"))
    assert f'href="{RESET_URL}"' in response.content.decode()


def test_it_resets_the_password_by_email(client, db, mailoutbox, settings):
    settings.SITE_URL = "https://keymeter.example.com"
    user = make_user("erin@example.org", name="Erin")
    response = client.post(RESET_URL, {"email": "Erin@Example.org"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert "we have sent it a link" in client.get(response["Location"]).content.decode()

    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert email.to == ["erin@example.org"]
    assert email.subject == "[keymeter] Reset your password"
    assert "Hello Erin," in email.body
    # The link points at SITE_URL, never at the Host header of the request.
    assert "https://keymeter.example.com/accounts/password/reset/" in email.body
    html = email.alternatives[0][0]
    assert "https://keymeter.example.com/accounts/password/reset/" in html

    # The link shows the form (Django swaps the token into the session first).
    form_page = client.get(_link(email.body), follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert "Password changed" in client.get(done["Location"]).content.decode()

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not user.check_password(PASSWORD)
    login = client.post(reverse("accounts:login"),
                        {"email": "erin@example.org", "password": NEW_PASSWORD})  # fmt: skip
    assert login.status_code == 302
    assert client.get("/accounts/tokens/").status_code == 200


def test_the_link_works_only_once(client, db, mailoutbox):
    make_user("erin@example.org")
    client.post(RESET_URL, {"email": "erin@example.org"})
    link = _link(mailoutbox[0].body)
    page = client.get(link, follow=True)
    set_url = page.redirect_chain[-1][0]
    client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    again = client.get(link, follow=True).content.decode()
    assert "This link no longer works" in again
    assert "new_password1" not in again


def test_a_weak_password_is_refused_with_a_field_error(client, db, mailoutbox):
    user = make_user("erin@example.org")
    client.post(RESET_URL, {"email": "erin@example.org"})
    page = client.get(_link(mailoutbox[0].body), follow=True)
    response = client.post(page.redirect_chain[-1][0],
                           {"new_password1": "12345678", "new_password2": "12345678"})  # fmt: skip
    assert response.status_code == 200
    assert "field-errors" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize("email", ["nobody@example.org", "inactive@example.org"])
def test_an_unknown_address_gets_the_same_answer_and_no_email(client, db, mailoutbox, email):
    make_user("erin@example.org")
    make_user("inactive@example.org", is_active=False)
    known = client.post(RESET_URL, {"email": "erin@example.org"}, follow=True)
    unknown = client.post(RESET_URL, {"email": email}, follow=True)
    assert unknown.redirect_chain == known.redirect_chain
    assert _without_csrf(unknown.content) == _without_csrf(known.content)
    assert [m.to for m in mailoutbox] == [["erin@example.org"]]


def test_a_malformed_address_is_a_field_error(client, db, mailoutbox):
    response = client.post(RESET_URL, {"email": "not an address"})
    assert response.status_code == 200
    assert "field-errors" in response.content.decode()
    assert mailoutbox == []


def test_the_email_is_in_the_users_language(client, db, mailoutbox):
    make_user("li@example.org", name="李雷", language="zh-hans")
    client.post(RESET_URL, {"email": "li@example.org"}, HTTP_ACCEPT_LANGUAGE="en")
    email = mailoutbox[0]
    assert email.subject == "[keymeter] 重置密码"
    assert "李雷，您好" in email.body
    assert 'lang="zh-hans"' in email.alternatives[0][0]


def test_without_a_saved_language_the_email_follows_the_page(client, db, mailoutbox):
    make_user("erin@example.org", name="Erin")
    client.post(RESET_URL, {"email": "erin@example.org"}, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert mailoutbox[0].subject == "[keymeter] 重置密码"


def test_an_address_gets_at_most_three_reset_emails_an_hour(client, db, mailoutbox):
    make_user("erin@example.org")
    pages = [client.post(RESET_URL, {"email": "erin@example.org"}, follow=True)
             for _ in range(5)]  # fmt: skip
    assert len(mailoutbox) == 3
    # The fourth and fifth requests look exactly like the first: nothing to learn from them.
    assert {_without_csrf(p.content) for p in pages} == {_without_csrf(pages[0].content)}


def test_a_new_password_lifts_the_lockout_of_failed_logins(client, db, mailoutbox, settings):
    make_user("erin@example.org")
    # Someone guessed from elsewhere; the per-address counter locks Erin out too.
    for _ in range(settings.LOGIN_THROTTLE_ATTEMPTS):
        client.post(reverse("accounts:login"), {"email": "erin@example.org", "password": "x"},
                    REMOTE_ADDR="203.0.113.9")  # fmt: skip
    locked = client.post(reverse("accounts:login"),
                         {"email": "erin@example.org", "password": PASSWORD})  # fmt: skip
    assert locked.status_code == 429

    client.post(RESET_URL, {"email": "erin@example.org"})
    form_page = client.get(_link(mailoutbox[0].body), follow=True)
    client.post(form_page.redirect_chain[-1][0],
                {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})  # fmt: skip
    login = client.post(reverse("accounts:login"),
                        {"email": "erin@example.org", "password": NEW_PASSWORD})  # fmt: skip
    assert login.status_code == 302
