"""POST /api/v1/usage: calls made directly with the SDK, reported with a km_ token."""

# ruff: noqa: F811  (the shared fixtures are imported from test_pipeline)

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client
from openai.types import CompletionUsage
from openai.types.responses import ResponseUsage

from accounts.tokens import create_gateway_token, revoke_gateway_token
from tests.usage.test_pipeline import _spool_in_tmp, prices, production  # noqa: F401
from usage import pipeline
from usage.models import ApiCall, DailyUsage

URL = "/api/v1/usage"


@pytest.fixture
def gateway_token(production):
    token, plaintext = create_gateway_token(production, "ci")
    return token, plaintext


@pytest.fixture
def post(gateway_token):
    client = Client()

    def send(body, token: str | None = gateway_token[1]):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return client.post(URL, body, content_type="application/json", **headers)

    return send


def chat_usage() -> dict:
    return CompletionUsage(
        prompt_tokens=100, completion_tokens=300, total_tokens=400,
        prompt_tokens_details={"cached_tokens": 0},
        completion_tokens_details={"reasoning_tokens": 0},
    ).model_dump()  # fmt: skip


def test_it_counts_an_sdk_chat_usage_object(prices, post, gateway_token, production):
    response = post({"model": "gpt-4o-mini", "usage": chat_usage(), "request_id": "chatcmpl-1"})

    assert response.status_code == 202
    assert response.json() == {"request_id": "chatcmpl-1"}
    pipeline.drain()
    call = ApiCall.objects.get()
    assert (call.source, call.endpoint, call.model) == ("ingest", "/v1/chat/completions",
                                                        "gpt-4o-mini")  # fmt: skip
    assert (call.project_id, call.environment_id) == (production.project_id, production.pk)
    assert call.gateway_token_id == gateway_token[0].pk
    assert (call.input_tokens, call.output_tokens) == (100, 300)
    assert call.cost_usd == Decimal("0.000195")
    assert DailyUsage.objects.get().cost_usd == Decimal("0.000195")


def test_it_counts_a_responses_usage_object(prices, post):
    usage = ResponseUsage(
        input_tokens=1000, input_tokens_details={"cached_tokens": 400, "cache_write_tokens": 0},
        output_tokens=50, output_tokens_details={"reasoning_tokens": 20}, total_tokens=1050,
    ).model_dump()  # fmt: skip

    assert post({"model": "gpt-4o-mini", "usage": usage}).status_code == 202
    pipeline.drain()

    call = ApiCall.objects.get()
    assert call.endpoint == "/v1/responses"
    assert (call.cached_input_tokens, call.reasoning_tokens) == (400, 20)
    assert call.cost_usd == Decimal("0.00015")


def test_it_makes_up_a_request_id_when_none_is_given(prices, post):
    first = post({"model": "gpt-4o-mini", "usage": chat_usage()}).json()["request_id"]
    second = post({"model": "gpt-4o-mini", "usage": chat_usage()}).json()["request_id"]
    pipeline.drain()

    assert first.startswith("ing_") and first != second
    assert ApiCall.objects.count() == 2


def test_it_is_idempotent_on_request_id(prices, post):
    body = {"model": "gpt-4o-mini", "usage": chat_usage(), "request_id": "retry-me"}
    assert post(body).status_code == 202
    pipeline.drain()
    assert post(body).status_code == 202
    assert post(body).status_code == 202
    pipeline.drain()

    assert ApiCall.objects.count() == 1
    assert DailyUsage.objects.get().calls == 1


def test_one_projects_request_ids_do_not_shadow_anothers(prices, post, beta):
    _, beta_token = create_gateway_token(beta.environments.get(name="production"), "ci")
    body = {"model": "gpt-4o-mini", "usage": chat_usage(), "request_id": "same-id"}
    post(body)
    post(body, token=beta_token)
    pipeline.drain()

    assert DailyUsage.objects.filter(project=beta).get().calls == 1
    assert ApiCall.objects.count() == 2


@pytest.mark.parametrize(
    "created, day",
    [
        (datetime(2026, 3, 2, 10, tzinfo=UTC).timestamp(), "2026-03-02"),
        (int(datetime(2026, 3, 2, 10, tzinfo=UTC).timestamp()), "2026-03-02"),
        ("2026-03-02T23:30:00Z", "2026-03-02"),
        ("2026-03-02T23:30:00-05:00", "2026-03-03"),
        ("2026-03-02 10:00:00", "2026-03-02"),
    ],
)
def test_it_takes_created_as_unix_seconds_or_iso(prices, post, created, day):
    response = post({"model": "gpt-4o-mini", "usage": chat_usage(), "created": created})

    assert response.status_code == 202
    pipeline.drain()
    assert DailyUsage.objects.get().day.isoformat() == day


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"model": "gpt-4o-mini", "usage": {}}, 400, "usage must be the usage object"),
        ({"model": "gpt-4o-mini", "usage": {"prompt_tokens": -1}}, 400, "non-negative"),
        ({"model": "gpt-4o-mini", "usage": {"prompt_tokens": "9"}}, 400, "non-negative"),
        ({"model": "gpt-4o-mini", "usage": {"input_tokens": 1}, "created": "soon"}, 400,
         "created must be"),
        ({"model": "gpt-4o-mini", "usage": {"input_tokens": 1}, "created": 10**15}, 400,
         "created"),
        ({"model": "gpt-4o-mini", "usage": {"input_tokens": 1}, "created": "1999-01-01"}, 400,
         "between 2020-01-01 and now"),
        ({"model": "gpt-4o-mini", "usage": {"input_tokens": 1}, "request_id": "a\nb"}, 400,
         "printable"),
        ({"model": "gpt-4o-mini", "usage": {"input_tokens": 1}, "request_id": "x" * 81}, 422,
         "request_id"),
        ({"model": "", "usage": {"input_tokens": 1}}, 422, "model"),
        ({"usage": {"input_tokens": 1}}, 422, "model"),
        ({"model": "gpt-4o-mini", "usage": [1, 2]}, 422, "usage"),
        ({"model": "gpt-4o-mini"}, 422, "usage"),
    ],
)  # fmt: skip
def test_it_rejects_bad_bodies_with_a_message(post, body, status, message):
    response = post(body)

    assert response.status_code == status
    assert message in str(response.json()["detail"])
    assert pipeline.drain().read == 0


def test_it_rejects_malformed_json(gateway_token):
    response = Client().post(URL, "{nope", content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {gateway_token[1]}")  # fmt: skip
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("token", [None, "km_not-a-real-token", "sk-proj-123"])
def test_it_needs_a_gateway_token(post, token):
    response = post({"model": "gpt-4o-mini", "usage": chat_usage()}, token=token)

    assert response.status_code == 401
    assert "km_" in response.json()["detail"]


def test_it_refuses_a_revoked_token_and_a_personal_api_token(post, gateway_token, api_as, alice):
    revoke_gateway_token(gateway_token[0])
    assert post({"model": "gpt-4o-mini", "usage": chat_usage()}).status_code == 401
    personal = api_as(alice).token
    assert post({"model": "gpt-4o-mini", "usage": chat_usage()}, token=personal).status_code == 401


def test_it_accepts_calls_while_redis_is_down(prices, post, settings):
    from tests.usage.test_pipeline import closed_port

    real_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/5"
    response = post({"model": "gpt-4o-mini", "usage": chat_usage(), "request_id": "offline"})
    assert response.status_code == 202

    settings.REDIS_URL = real_url
    pipeline.drain()
    assert ApiCall.objects.get().request_id.endswith(":offline")
