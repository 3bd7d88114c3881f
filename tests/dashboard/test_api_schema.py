"""schemathesis against /api/v1/openapi.json: generated requests to every operation,
in-process through Django's WSGI handler, as the admin of a project with data.

Every response must be no 500 and conform to the schema (status code, content type,
body). Path parameters point at the real project, key and token most of the time, so
the cases reach the code behind the 404s. Bounded by MAX_EXAMPLES per operation.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from accounts.keys import add_provider_key
from accounts.tokens import create_api_token, create_gateway_token
from dashboard.wsgi import application
from tests.conftest import make_user
from usage import budgets, pipeline
from usage.records import CallRecord

MAX_EXAMPLES = int(os.environ.get("KEYMETER_SCHEMA_EXAMPLES", "12"))
SECRET = "sk-proj-" + "Sc7hEmA9tHe5iS" * 4 + "T3BlbkFJ" + "x" * 20 + "Zq42"

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)
# An unknown query parameter is ignored, as HTTP APIs do; don't count that as accepting
# invalid data. Invalid values of the documented parameters and bodies still are tested.
schema.config.generation.update(allow_extra_parameters=False)


@pytest.fixture
def _keep_the_test_connection():
    # Like Django's test client: a request must not close the connection that holds the
    # test's transaction (the WSGI handler would, at request start and end).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_world(db, settings, _keep_the_test_connection):
    """alice is the admin of `alpha` (key, token, budget, a few calls)."""
    from accounts.projects import create_project

    settings.ALLOWED_HOSTS = ["*"]  # schemathesis' WSGI client sends Host: localhost
    alice = make_user("alice@example.org")
    project = create_project("Alpha", "alpha", owner=alice)
    env = project.environments.get(name="production")
    key = add_provider_key(env, SECRET, base_url="http://127.0.0.1:9/v1", by=alice,
                           issued_at=timezone.now() - timedelta(days=80))  # fmt: skip
    token, gateway_plaintext = create_gateway_token(env, "ci", by=alice)
    now = timezone.now().timestamp()
    for i, model in enumerate(["gpt-4o-mini", "gpt-4o", "acme-unpriced"] * 3):
        pipeline.enqueue(CallRecord(
            request_id=f"schema-{i}", created_at=now - i * 3600, project_id=project.pk,
            environment_id=env.pk, provider_key_id=key.pk, gateway_token_id=token.pk,
            endpoint="/v1/chat/completions", model=model, input_tokens=100, output_tokens=30,
        ))  # fmt: skip
    pipeline.drain()
    budgets.set_budget(project, monthly_limit_usd=Decimal("10"), by=alice)
    _, api_plaintext = create_api_token(alice, "schemathesis")
    return {"slug": project.slug, "key_id": key.pk, "token_id": token.pk,
            "api": api_plaintext, "gateway": gateway_plaintext}  # fmt: skip


def _aim(case, world) -> None:
    """Cases name the real project and its key or token (else they only meet 404s);
    a case that tries an invalid path parameter on purpose keeps it."""
    if case.meta and case.meta.is_negative_at(ParameterLocation.PATH):
        return
    params = case.path_parameters or {}
    if "slug" in params:
        params["slug"] = world["slug"]
    if "id" in params:
        params["id"] = world["token_id"] if "/tokens/" in case.path else world["key_id"]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("KEYMETER_SCHEMA_RANDOM") != "1",
    suppress_health_check=list(HealthCheck),
)
def test_the_api_conforms_to_its_schema_and_never_500s(case, api_world):
    _aim(case, api_world)
    # /api/v1/usage takes a gateway token (km_…); everything else a personal one.
    token = api_world["gateway"] if case.path == "/api/v1/usage" else api_world["api"]
    # positive_data_acceptance is left out: a schema-valid request may still break a
    # business rule (an empty name, an unknown environment) and get a documented 400.
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=[positive_data_acceptance])  # fmt: skip


# Regressions for what schemathesis found.


def test_a_project_named_past_the_slug_length_gets_a_cut_slug(api_as, alice):
    # A 100-character name made a 100-character slug: a 500 on Postgres (slug ≤ 50).
    r = api_as(alice).post("/api/v1/projects", {"name": "0" * 100, "slug": ""})
    assert r.status_code == 201
    assert r.json()["slug"] == "0" * 50


def test_every_operation_documents_401_and_422(client, db):
    spec = client.get("/api/v1/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert {"401", "422"} <= set(map(str, operation["responses"])), (method, path)


def test_a_huge_budget_limit_is_a_400(api_as, alice, alpha):
    # 1.5e109 overflowed the decimal context in quantize(): a 500.
    r = api_as(alice).put("/api/v1/projects/alpha/budget", {"monthly_limit_usd": 1.5e109})
    assert r.status_code == 400
    assert "too large" in r.json()["detail"]


def test_an_environment_name_with_a_nul_byte_is_a_400(api_as, alice, alpha):
    # Postgres refuses NUL bytes in a query parameter: that was a 500.
    r = api_as(alice).get("/api/v1/projects/alpha/budget", {"environment": "prod\x00"})
    assert r.status_code == 400
    assert "no environment named" in r.json()["detail"]
