"""The audit log page: every role reads it, filters work, it pages, no secret shows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import audit
from accounts.keys import add_provider_key
from accounts.models import AuditEvent

SECRET = "sk-proj-AuditPageSecret0123456789abcdefQw3R"


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_every_role_reads_the_audit_log(as_user, alpha, who, request):
    r = as_user(request.getfixturevalue(who)).get("/projects/alpha/audit/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "project.create" in html and "member.add" in html
    assert "alice@example.org" in html


def test_a_non_member_gets_404(as_user, alpha, beta, dave):
    assert as_user(dave).get("/projects/alpha/audit/").status_code == 404


def test_other_projects_events_are_not_shown(as_user, alpha, beta, alice):
    html = as_user(alice).get("/projects/alpha/audit/").content.decode()
    assert "dave@example.org" not in html


def test_it_filters_by_action_actor_and_dates(as_user, alpha, alice, bob):
    audit.record("budget.set", actor=bob, project=alpha, limit="1")
    old = audit.record("key.revoke", actor=alice, project=alpha, key="sk-…old1")
    AuditEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    client = as_user(alice)
    html = client.get("/projects/alpha/audit/", {"action": "budget.set"}).content.decode()
    assert "budget.set" in html and "member.add</code>" not in html
    html = client.get("/projects/alpha/audit/", {"actor": str(bob.pk)}).content.decode()
    assert "<code>budget.set</code>" in html and "<code>project.create</code>" not in html
    day = (timezone.now() - timedelta(days=40)).date().isoformat()
    html = client.get("/projects/alpha/audit/", {"start": day, "end": day}).content.decode()
    assert "sk-…old1" in html and "<code>budget.set</code>" not in html


def test_bad_filters_are_field_errors(as_user, alpha, alice):
    client = as_user(alice)
    r = client.get("/projects/alpha/audit/", {"start": "yesterday"})
    assert r.status_code == 400 and 'id="audit-start_error"' in r.content.decode()
    r = client.get("/projects/alpha/audit/", {"start": "2026-02-02", "end": "2026-02-01"})
    assert r.status_code == 400 and "before the start date" in r.content.decode()
    r = client.get("/projects/alpha/audit/", {"action": "<script>"})
    assert r.status_code == 400


def test_it_pages_and_keeps_the_filters(as_user, alpha, alice):
    for i in range(60):
        audit.record("budget.set", actor=alice, project=alpha, n=i)
    client = as_user(alice)
    first = client.get("/projects/alpha/audit/", {"action": "budget.set"}).content.decode()
    assert "Page 1 of 2" in first
    assert "?action=budget.set&amp;page=2" in first
    second = client.get("/projects/alpha/audit/", {"action": "budget.set", "page": "2"})
    assert second.content.decode().count("<code>budget.set</code>") == 10
    assert client.get("/projects/alpha/audit/", {"page": "99"}).status_code == 200


def test_a_key_event_shows_the_masked_key_only(as_user, alpha, alice):
    key = add_provider_key(alpha.environments.get(name="production"), SECRET, by=alice)
    html = as_user(alice).get("/projects/alpha/audit/").content.decode()
    assert "key.add" in html and key.masked in html
    assert SECRET not in html and SECRET[8:30] not in html
