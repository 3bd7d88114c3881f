from __future__ import annotations

from accounts.models import ApiToken
from accounts.tokens import create_api_token, user_for_api_token


def test_it_lists_only_my_api_tokens(client, alice, bob):
    create_api_token(alice, "alice-ci")
    create_api_token(bob, "bob-laptop")
    client.force_login(alice)
    html = client.get("/accounts/tokens/").content.decode()
    assert "alice-ci" in html
    assert "bob-laptop" not in html


def test_it_creates_a_token_shown_once(client, alice):
    client.force_login(alice)
    r = client.post("/accounts/tokens/", {"name": "ci-script"})
    assert r.status_code == 200
    html = r.content.decode()
    plaintext = html.split('id="new-token">')[1].split("<")[0]
    assert plaintext.startswith("kmu_")
    assert user_for_api_token(plaintext) == alice
    assert "no-store" in r["Cache-Control"]
    listing = client.get("/accounts/tokens/").content.decode()
    assert "ci-script" in listing
    assert plaintext not in listing


def test_it_rejects_a_too_long_name(client, alice):
    client.force_login(alice)
    r = client.post("/accounts/tokens/", {"name": "x" * 101})
    assert r.status_code == 400
    assert 'id="id_name_error"' in r.content.decode()
    assert not ApiToken.objects.exists()


def test_it_revokes_my_token_but_not_someone_elses(client, alice, bob):
    mine, mine_plain = create_api_token(alice, "mine")
    theirs, theirs_plain = create_api_token(bob, "theirs")
    client.force_login(alice)
    assert client.post(f"/accounts/tokens/{theirs.pk}/revoke/").status_code == 404
    assert user_for_api_token(theirs_plain) == bob
    r = client.post(f"/accounts/tokens/{mine.pk}/revoke/")
    assert r.status_code == 302
    assert user_for_api_token(mine_plain) is None
