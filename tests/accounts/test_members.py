"""Members & roles, and invitations by email (Django's locmem outbox)."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import AuditEvent, Invitation, Membership, Role, User
from tests.conftest import PASSWORD, make_user


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture(autouse=True)
def _locmem(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SITE_URL = "https://keymeter.example.org"


def _role(project, user):
    return Membership.objects.get(project=project, user=user).role


def _link(message) -> str:
    return re.search(r"https://keymeter\.example\.org(/accounts/invite/\S+/)", message.body)[1]


# Members and roles


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_everyone_in_the_project_sees_its_members(as_user, alpha, who, request):
    html = as_user(request.getfixturevalue(who)).get("/projects/alpha/members/").content.decode()
    for email in ("alice@example.org", "bob@example.org", "charlie@example.org"):
        assert email in html
    assert ("Send invitation" in html) == (who == "alice")


def test_a_non_member_gets_404(as_user, alpha, beta, dave):
    client = as_user(dave)
    assert client.get("/projects/alpha/members/").status_code == 404
    assert (
        client.post(
            "/projects/alpha/invitations/", {"email": "x@example.org", "role": "admin"}
        ).status_code
        == 404
    )


def test_an_admin_changes_a_role(as_user, alpha, alice, bob):
    r = as_user(alice).post(f"/projects/alpha/members/{bob.pk}/role/", {"role": "admin"})
    assert r.status_code == 302
    assert _role(alpha, bob) == Role.ADMIN
    event = AuditEvent.objects.get(action="member.role")
    assert event.actor == alice and event.detail == {
        "email": bob.email,
        "old_role": "member",
        "role": "admin",
    }


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_members_and_viewers_cannot_change_roles_or_invite(as_user, alpha, alice, who, request):
    client = as_user(request.getfixturevalue(who))
    assert (
        client.post(f"/projects/alpha/members/{alice.pk}/role/", {"role": "viewer"}).status_code
        == 403
    )
    assert client.post(f"/projects/alpha/members/{alice.pk}/remove/").status_code == 403
    assert (
        client.post(
            "/projects/alpha/invitations/", {"email": "eve@example.org", "role": "admin"}
        ).status_code
        == 403
    )
    assert _role(alpha, alice) == Role.ADMIN
    assert not Invitation.objects.exists() and not mail.outbox


def test_an_admin_removes_a_member(as_user, alpha, alice, charlie):
    r = as_user(alice).post(f"/projects/alpha/members/{charlie.pk}/remove/")
    assert r.status_code == 302
    assert not Membership.objects.filter(project=alpha, user=charlie).exists()
    assert AuditEvent.objects.filter(
        action="member.remove", actor=alice, detail__email=charlie.email
    ).exists()


def test_the_last_admin_can_be_neither_removed_nor_demoted(as_user, alpha, alice):
    client = as_user(alice)
    r = client.post(f"/projects/alpha/members/{alice.pk}/remove/", follow=True)
    assert "at least one admin" in r.content.decode()
    r = client.post(f"/projects/alpha/members/{alice.pk}/role/", {"role": "viewer"}, follow=True)
    assert "at least one admin" in r.content.decode()
    assert _role(alpha, alice) == Role.ADMIN


def test_a_bad_role_changes_nothing(as_user, alpha, alice, bob):
    r = as_user(alice).post(
        f"/projects/alpha/members/{bob.pk}/role/", {"role": "owner"}, follow=True
    )
    assert r.status_code == 200
    assert "Choose a role." in r.content.decode()
    assert _role(alpha, bob) == Role.MEMBER


def test_someone_outside_the_project_is_404(as_user, alpha, beta, alice, dave):
    assert as_user(alice).post(f"/projects/alpha/members/{dave.pk}/remove/").status_code == 404


# Invitations


def test_an_admin_invites_by_email_and_a_new_user_joins(as_user, alpha, alice, client):
    r = as_user(alice).post(
        "/projects/alpha/invitations/", {"email": "Eve@Example.org", "role": "viewer"}
    )
    assert r.status_code == 302
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["eve@example.org"]
    assert "Alpha" in message.subject
    link = _link(message)
    token = link.split("/")[-2]
    invitation = Invitation.objects.get()
    # Only the token's SHA-256 is stored.
    assert invitation.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(list(Invitation.objects.values()))
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
    invite_event = AuditEvent.objects.get(action="member.invite")
    assert token not in str(invite_event.detail)

    client.logout()
    page = client.get(link)
    assert page.status_code == 200
    assert "eve@example.org" in page.content.decode()
    r = client.post(link, {"name": "Eve", "password1": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 302 and r.url == "/projects/alpha/"
    eve = User.objects.get(email="eve@example.org")
    assert eve.check_password(PASSWORD) and eve.name == "Eve"
    assert _role(alpha, eve) == Role.VIEWER
    assert client.get("/projects/alpha/").status_code == 200  # logged in as Eve
    assert AuditEvent.objects.filter(action="member.accept", actor=eve).exists()

    # Single use.
    client.logout()
    assert client.get(link).status_code == 404
    assert client.post(link, {"password1": "x", "password2": "x"}).status_code == 404


def test_an_existing_user_logs_in_and_accepts(as_user, alpha, beta, alice, dave, client):
    as_user(alice).post("/projects/alpha/invitations/", {"email": dave.email, "role": "member"})
    link = _link(mail.outbox[0])
    client.logout()
    html = client.get(link).content.decode()
    assert "You already have an account" in html
    assert client.post(link).status_code == 400
    assert not Membership.objects.filter(project=alpha, user=dave).exists()
    client.force_login(dave)
    assert client.post(link).status_code == 302
    assert _role(alpha, dave) == Role.MEMBER


def test_another_logged_in_user_cannot_take_the_invitation(as_user, alpha, beta, alice, dave):
    client = as_user(alice)
    client.post("/projects/alpha/invitations/", {"email": "eve@example.org", "role": "admin"})
    link = _link(mail.outbox[0])
    client.force_login(dave)
    assert "logged in as another user" in client.get(link).content.decode()
    r = client.post(link)
    assert r.status_code == 400
    assert not Membership.objects.filter(project=alpha, user=dave).exists()
    assert Invitation.objects.get().accepted_at is None


def test_an_expired_invitation_does_not_work(as_user, alpha, alice, client):
    as_user(alice).post(
        "/projects/alpha/invitations/", {"email": "eve@example.org", "role": "member"}
    )
    link = _link(mail.outbox[0])
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client.logout()
    assert client.get(link).status_code == 404
    r = client.post(link, {"password1": PASSWORD, "password2": PASSWORD})
    assert r.status_code == 404
    assert not User.objects.filter(email="eve@example.org").exists()


def test_a_made_up_token_is_404(client, db):
    assert client.get("/accounts/invite/kmi_nope/").status_code == 404
    assert client.get("/accounts/invite/whatever/").status_code == 404


def test_sending_again_replaces_the_link(as_user, alpha, alice, client):
    admin = as_user(alice)
    admin.post("/projects/alpha/invitations/", {"email": "eve@example.org", "role": "member"})
    first = _link(mail.outbox[0])
    invitation = Invitation.objects.get()
    admin.post(f"/projects/alpha/invitations/{invitation.pk}/resend/")
    second = _link(mail.outbox[1])
    assert first != second
    client.logout()
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200


def test_an_admin_cancels_an_invitation(as_user, alpha, alice, client):
    admin = as_user(alice)
    admin.post("/projects/alpha/invitations/", {"email": "eve@example.org", "role": "member"})
    link = _link(mail.outbox[0])
    invitation = Invitation.objects.get()
    assert "eve@example.org" in admin.get("/projects/alpha/members/").content.decode()
    assert admin.post(f"/projects/alpha/invitations/{invitation.pk}/cancel/").status_code == 302
    assert AuditEvent.objects.filter(action="member.uninvite").exists()
    client.logout()
    assert client.get(link).status_code == 404


@pytest.mark.parametrize(
    "data,field,message",
    [
        ({"email": "not-an-email", "role": "member"}, "email", "valid email"),
        ({"email": "bob@example.org", "role": "member"}, "email", "already a member"),
        ({"email": "eve@example.org", "role": "owner"}, "role", "Select a valid choice"),
    ],
)
def test_bad_invitations_are_field_errors(as_user, alpha, alice, data, field, message):
    r = as_user(alice).post("/projects/alpha/invitations/", data)
    assert r.status_code == 400
    html = r.content.decode()
    assert f'id="invite-{field}_error"' in html and message in html
    assert not Invitation.objects.exists() and not mail.outbox


def test_a_weak_or_mismatched_password_is_a_field_error(as_user, alpha, alice, client):
    as_user(alice).post(
        "/projects/alpha/invitations/", {"email": "eve@example.org", "role": "member"}
    )
    link = _link(mail.outbox[0])
    client.logout()
    r = client.post(link, {"password1": "123", "password2": "123"})
    assert r.status_code == 400 and 'id="signup-password1_error"' in r.content.decode()
    r = client.post(link, {"password1": PASSWORD, "password2": PASSWORD + "x"})
    assert r.status_code == 400 and 'id="signup-password2_error"' in r.content.decode()
    assert PASSWORD not in r.content.decode()
    assert not User.objects.filter(email="eve@example.org").exists()


def test_an_admin_accepting_a_stale_invitation_keeps_their_role(alpha, alice):
    from accounts import invitations

    other = make_user("frank@example.org")
    invitation, _token = invitations.create_invitation(alpha, other.email, Role.VIEWER, by=alice)
    from accounts.projects import set_member_role

    set_member_role(alpha, other, Role.ADMIN, by=alice)
    invitations.accept_invitation(invitation, user=other)
    assert _role(alpha, other) == Role.ADMIN


def test_a_mail_server_failure_keeps_the_invitation_and_says_so(as_user, alpha, alice, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2
    r = as_user(alice).post(
        "/projects/alpha/invitations/", {"email": "eve@example.org", "role": "member"}, follow=True
    )
    assert r.status_code == 200
    assert "could not be sent" in r.content.decode()
    assert Invitation.objects.filter(email="eve@example.org").exists()
