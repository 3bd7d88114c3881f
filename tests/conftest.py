"""Shared fixtures: alice (admin), bob (member) and charlie (viewer) of project
"alpha"; dave is the admin of project "beta" and sees nothing of alpha."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role, User
from accounts.projects import create_project, set_member_role
from accounts.tokens import create_api_token
from dashboard.redis_client import get_redis

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    # Real hashing is deliberately slow; the suite makes hundreds of users.
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_redis():
    # Before too: a run that was killed midway must not leave records for the next one.
    get_redis().flushdb()
    yield
    get_redis().flushdb()


@pytest.fixture(autouse=True)
def _static_without_manifest(settings):
    # With DEBUG off (DATABASE_URL set) settings pick the manifest storage, which needs
    # `collectstatic`; tests render {% static %} from the source tree instead.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def make_user(email: str, **extra) -> User:
    return User.objects.create_user(email, PASSWORD, **extra)


@pytest.fixture
def alice(db) -> User:
    return make_user("alice@example.org", name="Alice")


@pytest.fixture
def bob(db) -> User:
    return make_user("bob@example.org", name="Bob")


@pytest.fixture
def charlie(db) -> User:
    return make_user("charlie@example.org", name="Charlie")


@pytest.fixture
def dave(db) -> User:
    return make_user("dave@example.org", name="Dave")


@pytest.fixture
def alpha(alice, bob, charlie):
    project = create_project("Alpha", "alpha", owner=alice)
    set_member_role(project, bob, Role.MEMBER, by=alice)
    set_member_role(project, charlie, Role.VIEWER, by=alice)
    return project


@pytest.fixture
def beta(dave):
    return create_project("Beta", "beta", owner=dave)


class ApiClient(Client):
    """A test client that sends a personal API token and JSON bodies."""

    def __init__(self, token: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.token = token

    def _auth(self, extra):
        if self.token:
            extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {self.token}")
        return extra

    def get(self, path, data=None, **extra):
        return super().get(path, data, **self._auth(extra))

    def post(self, path, data=None, content_type="application/json", **extra):
        return super().post(path, data, content_type=content_type, **self._auth(extra))

    def put(self, path, data=None, content_type="application/json", **extra):
        return super().put(path, data, content_type=content_type, **self._auth(extra))

    def delete(self, path, data=None, content_type="application/json", **extra):
        return super().delete(path, data, content_type=content_type, **self._auth(extra))


@pytest.fixture
def api_as():
    """api_as(user) → an ApiClient authenticated with a fresh kmu_ token of that user."""

    def make(user: User | None) -> ApiClient:
        if user is None:
            return ApiClient()
        _, plaintext = create_api_token(user, "test")
        return ApiClient(plaintext)

    return make
