"""Key tools: import with issue date, validate now (against a real local fake OpenAI),
and the leak-scan paste box, which never echoes what was pasted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.keys import add_provider_key
from accounts.models import AuditEvent, KeyStageNotice, ProviderKey
from tests.support.servers import free_port
from tests.usage.conftest import upstream  # noqa: F401  (the session's fake OpenAI server)

SECRET = "sk-proj-" + "Kv8sTr4mQp" * 4 + "T3BlbkFJ" + "Xc5nLw2zHy" * 4 + "Rt9Z"
OTHER = "sk-proj-" + "Mn3bVc7xZa" * 4 + "T3BlbkFJ" + "Qw1eRt5yUi" * 4 + "Lp0K"


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def fake(upstream):  # noqa: F811
    upstream.rejected_keys.clear()
    yield upstream
    upstream.rejected_keys.clear()


def _env(project, name="production"):
    return project.environments.get(name=name)


def _import(**over):
    day = (timezone.now() - timedelta(days=120)).date().isoformat()
    return {
        "environment": "",
        "issued_at": day,
        "secret": SECRET,
        "kind": "api",
        "name": "",
        "base_url": "",
    } | over


# The page


@pytest.mark.parametrize(
    "who,admin,member", [("alice", True, True), ("bob", False, True), ("charlie", False, False)]
)
def test_each_role_sees_what_it_may_do(as_user, alpha, alice, who, admin, member, request):
    add_provider_key(_env(alpha), SECRET, by=alice)
    html = as_user(request.getfixturevalue(who)).get("/projects/alpha/keys/tools/").content.decode()
    assert "sk-proj-…Rt9Z" in html or "…Rt9Z" in html
    assert SECRET not in html
    assert ("Validate now" in html) == admin
    assert ("Import key" in html) == admin
    assert ("Leak scan" in html) == member


def test_a_non_member_gets_404_everywhere(as_user, alpha, beta, alice, dave):
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    client = as_user(dave)
    assert client.get("/projects/alpha/keys/tools/").status_code == 404
    assert client.post("/projects/alpha/keys/import/", _import()).status_code == 404
    assert client.post(f"/projects/alpha/keys/{key.pk}/validate/").status_code == 404
    assert client.post("/projects/alpha/keys/leak-scan/", {"text": SECRET}).status_code == 404


def test_the_project_page_links_to_the_key_tools(as_user, alpha, charlie):
    html = as_user(charlie).get("/projects/alpha/").content.decode()
    for url in (
        "/projects/alpha/keys/tools/",
        "/projects/alpha/budget/",
        "/projects/alpha/members/",
        "/projects/alpha/audit/",
        "/projects/alpha/alerts/",
    ):
        assert f'href="{url}"' in html


# Import


def test_an_admin_imports_a_key_with_its_issue_date(as_user, alpha, alice):
    env = _env(alpha, "staging")
    r = as_user(alice).post("/projects/alpha/keys/import/", _import(environment=env.pk))
    assert r.status_code == 302
    key = ProviderKey.objects.get()
    assert key.environment == env
    assert key.age_days() == 120
    assert key.rotation_stage() == "overdue"
    page = as_user(alice).get(r.url).content.decode()
    assert "120 days old" in page and "overdue for rotation" in page
    assert SECRET not in page
    event = AuditEvent.objects.get(action="key.add")
    assert event.actor == alice and SECRET not in str(event.detail)


def test_an_admin_key_can_be_imported_by_staff(as_user, alpha, alice):
    alice.is_staff = True
    alice.save()
    r = as_user(alice).post(
        "/projects/alpha/keys/import/", _import(environment=_env(alpha).pk, kind="admin")
    )
    assert r.status_code == 302
    assert ProviderKey.objects.get().kind == ProviderKey.Kind.ADMIN


def test_a_project_admin_cannot_add_an_organization_admin_key(as_user, alpha, alice):
    r = as_user(alice).post(
        "/projects/alpha/keys/import/", _import(environment=_env(alpha).pk, kind="admin")
    )
    assert r.status_code == 400
    assert "Only staff can add an Admin key" in r.content.decode()
    assert not ProviderKey.objects.exists()


@pytest.mark.parametrize(
    "over,field",
    [
        ({"issued_at": ""}, "issued_at"),
        ({"issued_at": "2999-01-01"}, "issued_at"),
        ({"secret": "not a key"}, "secret"),
        ({"kind": "root"}, "kind"),
    ],
)
def test_import_errors_are_field_errors_and_never_echo_the_secret(
    as_user, alpha, alice, over, field
):
    r = as_user(alice).post(
        "/projects/alpha/keys/import/", _import(environment=_env(alpha).pk, **over)
    )
    assert r.status_code == 400
    html = r.content.decode()
    assert f'id="import-{field}_error"' in html
    assert SECRET not in html
    assert not ProviderKey.objects.exists()


def test_importing_into_an_environment_with_an_active_key_says_rotate(as_user, alpha, alice):
    add_provider_key(_env(alpha), OTHER, by=alice)
    r = as_user(alice).post("/projects/alpha/keys/import/", _import(environment=_env(alpha).pk))
    assert r.status_code == 400
    assert "rotate that key" in r.content.decode()


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_members_and_viewers_cannot_import_or_validate(as_user, alpha, alice, who, request):
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    client = as_user(request.getfixturevalue(who))
    assert (
        client.post(
            "/projects/alpha/keys/import/", _import(environment=_env(alpha, "dev").pk)
        ).status_code
        == 403
    )
    assert client.post(f"/projects/alpha/keys/{key.pk}/validate/").status_code == 403
    assert ProviderKey.objects.count() == 1


# Validate now


def test_validate_now_says_valid(as_user, alpha, alice, fake):
    key = add_provider_key(_env(alpha), SECRET, base_url=f"{fake.url}/v1", by=alice)
    r = as_user(alice).post(f"/projects/alpha/keys/{key.pk}/validate/", follow=True)
    assert "is valid" in r.content.decode()
    key.refresh_from_db()
    assert key.last_validated_at is not None and key.invalid_at is None


def test_validate_now_says_invalid_flags_and_audits(as_user, alpha, alice, fake):
    key = add_provider_key(_env(alpha), SECRET, base_url=f"{fake.url}/v1", by=alice)
    fake.rejected_keys.add(SECRET)
    r = as_user(alice).post(f"/projects/alpha/keys/{key.pk}/validate/", follow=True)
    html = r.content.decode()
    assert "is invalid" in html and "HTTP 401" in html
    assert 'badge--danger">invalid' in html
    key.refresh_from_db()
    assert key.invalid_at is not None
    assert AuditEvent.objects.filter(action="key.invalid", actor=alice).exists()
    assert KeyStageNotice.objects.filter(provider_key=key, stage="invalid").exists()


def test_validate_now_says_unknown_when_the_provider_is_unreachable(as_user, alpha, alice):
    key = add_provider_key(
        _env(alpha), SECRET, base_url=f"http://127.0.0.1:{free_port()}/v1", by=alice
    )
    r = as_user(alice).post(f"/projects/alpha/keys/{key.pk}/validate/", follow=True)
    assert "Could not tell" in r.content.decode()
    key.refresh_from_db()
    assert key.invalid_at is None


def test_another_projects_key_is_404(as_user, alpha, beta, alice, dave):
    key = add_provider_key(_env(beta), SECRET, by=dave)
    assert as_user(alice).post(f"/projects/alpha/keys/{key.pk}/validate/").status_code == 404


# Leak scan


def test_the_leak_scan_shows_masked_keys_and_lines_only(as_user, alpha, alice, bob):
    key = add_provider_key(_env(alpha), SECRET, by=alice)
    text = f"line one\nOPENAI_API_KEY={SECRET}\nnothing\nother: {OTHER}\n"
    r = as_user(bob).post("/projects/alpha/keys/leak-scan/", {"text": text})
    assert r.status_code == 200
    html = r.content.decode()
    assert "Found 2 keys." in html
    assert SECRET not in html and OTHER not in html
    assert "OPENAI_API_KEY" not in html and "line one" not in html
    assert SECRET[8:28] not in html and OTHER[8:28] not in html
    assert '<td class="num">2</td>' in html and '<td class="num">4</td>' in html
    assert key.masked in html
    assert "not one of your projects’ keys" in html
    key.refresh_from_db()
    assert key.leaked_at is not None
    assert AuditEvent.objects.filter(action="key.leaked", actor=bob).exists()
    scan = AuditEvent.objects.get(action="leak.scan")
    assert scan.detail["found"] == 2 and SECRET not in str(scan.detail)


def test_another_projects_key_is_not_named(as_user, alpha, beta, bob, dave):
    add_provider_key(_env(beta), SECRET, name="beta-secret-name", by=dave)
    html = as_user(bob).post("/projects/alpha/keys/leak-scan/", {"text": SECRET}).content.decode()
    assert "beta-secret-name" not in html and "Beta" not in html
    assert "not one of your projects’ keys" in html


def test_nothing_found_says_so(as_user, alpha, bob):
    r = as_user(bob).post("/projects/alpha/keys/leak-scan/", {"text": "sk-short and harmless"})
    assert "No OpenAI keys found" in r.content.decode()


def test_an_empty_or_huge_paste_is_a_field_error(as_user, alpha, bob):
    client = as_user(bob)
    r = client.post("/projects/alpha/keys/leak-scan/", {"text": ""})
    assert r.status_code == 400 and 'id="scan-text_error"' in r.content.decode()
    r = client.post("/projects/alpha/keys/leak-scan/", {"text": SECRET + "x" * 1_000_001})
    assert r.status_code == 400
    assert SECRET not in r.content.decode()


def test_a_viewer_cannot_scan(as_user, alpha, charlie):
    assert (
        as_user(charlie).post("/projects/alpha/keys/leak-scan/", {"text": SECRET}).status_code
        == 403
    )
