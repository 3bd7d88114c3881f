"""GET/POST /api/v1/projects, GET /api/v1/projects/{slug}, POST …/environments."""

from __future__ import annotations

import pytest

from accounts.models import AuditEvent, Environment, Membership, Project, Role, User

API = "/api/v1"


def test_it_lists_only_the_callers_projects_with_their_role(alpha, beta, charlie, api_as):
    r = api_as(charlie).get(f"{API}/projects")
    assert r.status_code == 200
    [project] = r.json()
    assert project["name"] == "Alpha"
    assert project["slug"] == "alpha"
    assert project["role"] == "viewer"
    assert [e["name"] for e in project["environments"]] == ["dev", "production", "staging"]


def test_it_lists_each_users_own_role(alpha, beta, alice, bob, dave, api_as):
    def roles(user: User) -> dict[str, str]:
        return {p["slug"]: p["role"] for p in api_as(user).get(f"{API}/projects").json()}

    assert roles(alice) == {"alpha": "admin"}
    assert roles(bob) == {"alpha": "member"}
    assert roles(dave) == {"beta": "admin"}


def test_staff_see_every_project_as_admin(alpha, beta, api_as):
    staff = User.objects.create_user("ops@example.org", "pw", is_staff=True)
    r = api_as(staff).get(f"{API}/projects")
    assert {p["slug"]: p["role"] for p in r.json()} == {"alpha": "admin", "beta": "admin"}


def test_it_creates_a_project_with_default_environments(alice, api_as):
    r = api_as(alice).post(f"{API}/projects", {"name": "Gamma Shop", "slug": "gamma"})
    assert r.status_code == 201
    body = r.json()
    assert body["slug"] == "gamma"
    assert body["name"] == "Gamma Shop"
    assert body["role"] == "admin"
    assert [e["name"] for e in body["environments"]] == ["dev", "production", "staging"]
    assert body["created_at"].startswith("20")  # ISO 8601

    project = Project.objects.get(slug="gamma")
    assert Membership.objects.get(project=project).user == alice
    assert Membership.objects.get(project=project).role == Role.ADMIN
    event = AuditEvent.objects.get(action="project.create", project=project)
    assert event.actor == alice
    assert event.ip == "127.0.0.1"


def test_it_makes_the_slug_from_the_name_when_none_is_given(alice, api_as):
    r = api_as(alice).post(f"{API}/projects", {"name": "Search Bot"})
    assert r.status_code == 201
    assert r.json()["slug"] == "search-bot"


def test_it_rejects_a_duplicate_slug(alpha, dave, api_as):
    r = api_as(dave).post(f"{API}/projects", {"name": "Other", "slug": "alpha"})
    assert r.status_code == 409
    assert "'alpha' is taken" in r.json()["detail"]
    assert Project.objects.filter(slug="alpha").count() == 1


@pytest.mark.parametrize("slug", ["Bad Slug", "bad/slug", "bad.slug", "UPPER", "-edge", "ü"])
def test_it_rejects_a_slug_with_bad_characters(alice, api_as, slug):
    r = api_as(alice).post(f"{API}/projects", {"name": "Gamma", "slug": slug})
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"][-1] == "slug"
    assert "lowercase letters" in error["msg"]
    assert not Project.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"slug": "gamma"}, "name"),
        ({"name": 42, "slug": "gamma"}, "name"),
        ({"name": ["Gamma"]}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Gam\x00ma"}, "name"),
        ({"name": "Gamma", "slug": "g" * 51}, "slug"),
        ({"name": "Gamma", "slug": None}, "slug"),
    ],
)
def test_it_rejects_bad_project_fields(alice, api_as, body, field):
    r = api_as(alice).post(f"{API}/projects", body)
    assert r.status_code == 422
    assert [e["loc"][-1] for e in r.json()["detail"]] == [field]
    assert not Project.objects.exists()


def test_it_rejects_a_blank_name(alice, api_as):
    r = api_as(alice).post(f"{API}/projects", {"name": "   ", "slug": "gamma"})
    assert r.status_code == 400
    assert "needs a name" in r.json()["detail"]


def test_it_shows_one_project(alpha, bob, api_as):
    r = api_as(bob).get(f"{API}/projects/alpha")
    assert r.status_code == 200
    assert r.json()["role"] == "member"
    assert [e["name"] for e in r.json()["environments"]] == ["dev", "production", "staging"]


def test_an_unknown_project_is_not_found(alice, api_as):
    r = api_as(alice).get(f"{API}/projects/nope")
    assert r.status_code == 404
    assert r.json() == {"detail": "No such project"}


def test_an_admin_adds_an_environment(alpha, alice, api_as):
    r = api_as(alice).post(f"{API}/projects/alpha/environments", {"name": "QA Europe"})
    assert r.status_code == 201
    assert r.json()["name"] == "qa-europe"
    assert alpha.environments.filter(name="qa-europe").exists()
    event = AuditEvent.objects.get(action="environment.create")
    assert (event.actor, event.project) == (alice, alpha)


def test_it_rejects_a_duplicate_environment(alpha, alice, api_as):
    r = api_as(alice).post(f"{API}/projects/alpha/environments", {"name": "staging"})
    assert r.status_code == 409
    assert "'staging' already exists" in r.json()["detail"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({}, 422),
        ({"name": None}, 422),
        ({"name": "x" * 41}, 422),
        ({"name": "!!!"}, 400),
        # Each ligature becomes three letters: too long only after slugifying.
        ({"name": "\ufb03" * 20}, 400),
    ],
)
def test_it_rejects_bad_environment_names(alpha, alice, api_as, body, status):
    r = api_as(alice).post(f"{API}/projects/alpha/environments", body)
    assert r.status_code == status
    assert r.json()["detail"]
    assert Environment.objects.filter(project=alpha).count() == 3
