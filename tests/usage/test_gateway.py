"""The gateway under a real uvicorn server, called with the official openai SDK,
forwarding to a real fake-OpenAI server."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from accounts.tokens import revoke_gateway_token
from tests.usage.conftest import PROVIDER_SECRET, stream_records

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def sdk(setup, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{setup['url']}/v1", api_key=setup["token"], **kwargs)


def test_it_forwards_a_chat_call_with_the_provider_key(gateway_setup):
    client = sdk(gateway_setup)
    completion = client.chat.completions.create(**CHAT)
    assert completion.choices[0].message.content == "Hello there!"
    assert completion.usage.prompt_tokens == 100

    received = gateway_setup["upstream"].received[-1]
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {PROVIDER_SECRET}"
    everything_sent_upstream = json.dumps(received.headers) + received.body.decode()
    assert gateway_setup["token"] not in everything_sent_upstream

    [record] = stream_records()
    assert record.endpoint == "/v1/chat/completions"
    assert record.model == "gpt-4o-mini"
    assert (record.input_tokens, record.output_tokens) == (100, 300)
    assert record.status_code == 200 and not record.stream
    assert record.project_id == gateway_setup["environment"].project_id
    assert record.provider_key_id == gateway_setup["key"].pk
    assert record.gateway_token_id == gateway_setup["token_row"].pk
    assert PROVIDER_SECRET not in record.to_json().decode()


def _raw_stream(url: str, token: str, payload: dict) -> bytes:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=payload,
                      headers={"Authorization": f"Bearer {token}"}, timeout=10) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


def test_a_stream_without_include_usage_is_unchanged_and_still_counted(gateway_setup):
    upstream = gateway_setup["upstream"]
    payload = {**CHAT, "stream": True}
    direct = _raw_stream(upstream.url, "sk-direct", payload)
    through = _raw_stream(gateway_setup["url"], gateway_setup["token"], payload)

    assert through == direct  # byte for byte what OpenAI would have sent
    assert b'"usage"' not in through
    forwarded = json.loads(upstream.received[-1].body)
    assert forwarded["stream_options"] == {"include_usage": True}

    [record] = stream_records()
    assert record.stream and (record.input_tokens, record.output_tokens) == (100, 300)


def test_a_stream_with_include_usage_keeps_its_usage_chunk(gateway_setup):
    upstream = gateway_setup["upstream"]
    client = sdk(gateway_setup)
    chunks = list(client.chat.completions.create(
        **CHAT, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Hello there!"
    assert chunks[-1].usage.completion_tokens == 300

    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    assert _raw_stream(gateway_setup["url"], gateway_setup["token"], payload) == \
        _raw_stream(upstream.url, "sk-direct", payload)
    records = stream_records(2)
    assert [r.output_tokens for r in records] == [300, 300]


def test_embeddings_completions_and_responses_are_counted(gateway_setup):
    client = sdk(gateway_setup)
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    response = client.responses.create(model="gpt-4o-mini", input="hi")
    assert response.output_text == "Hello there!"
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert events[-1].type == "response.completed"

    records = {(r.endpoint, r.stream): r for r in stream_records(4)}
    assert records[("/v1/embeddings", False)].input_tokens == 8
    assert records[("/v1/completions", False)].output_tokens == 300
    assert records[("/v1/responses", False)].input_tokens == 100
    assert records[("/v1/responses", True)].output_tokens == 300
    assert records[("/v1/responses", True)].model == "gpt-4o-mini"


def test_models_and_other_paths_pass_through_without_cost(gateway_setup):
    client = sdk(gateway_setup)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    records = stream_records()
    assert records[0].endpoint == "/v1/models" and records[0].input_tokens == 0


@pytest.mark.parametrize("token", ["", "km_not-a-real-token", "sk-something-else"])
def test_it_refuses_a_bad_token_in_openai_shape(gateway_setup, token):
    response = httpx.post(f"{gateway_setup['url']}/v1/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {token}"} if token else {})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert gateway_setup["upstream"].received == []


def test_the_sdk_sees_an_authentication_error(gateway_setup):
    client = openai.OpenAI(base_url=f"{gateway_setup['url']}/v1", api_key="km_wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert info.value.code == "invalid_api_key"


def test_a_token_limit_refuses_in_openai_shape_with_headers(gateway_setup):
    token = gateway_setup["token_row"]
    token.requests_per_minute = 2
    token.save()
    client = sdk(gateway_setup, max_retries=0)
    first = client.chat.completions.with_raw_response.create(**CHAT)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    client.chat.completions.create(**CHAT)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(**CHAT)
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(gateway_setup["upstream"].received) == 2
    assert [r.status_code for r in stream_records(3)] == [200, 200, 429]


def test_a_tokens_per_minute_limit_stops_the_calls_after_the_budget(gateway_setup):
    token = gateway_setup["token_row"]
    token.tokens_per_minute = 500  # one call uses 400
    token.save()
    client = sdk(gateway_setup, max_retries=0)
    client.chat.completions.create(**CHAT)
    stream_records(1)
    client.chat.completions.create(**CHAT)  # 400 < 500: still allowed
    stream_records(2)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**CHAT)


def test_a_revoked_token_stops_working_within_seconds(gateway_setup):
    from usage.gateway import gateway

    gateway.routes.ttl = 0.2
    client = sdk(gateway_setup, max_retries=0)
    client.models.list()
    revoke_gateway_token(gateway_setup["token_row"])
    time.sleep(0.3)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_malformed_json_gets_a_400(gateway_setup):
    response = httpx.post(f"{gateway_setup['url']}/v1/chat/completions", content=b"{nope",
                          headers={"Authorization": f"Bearer {gateway_setup['token']}",
                                   "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert gateway_setup["upstream"].received == []


def test_an_environment_without_a_key_gets_a_clear_refusal(gateway_setup, alice):
    from accounts.keys import revoke_key
    from usage.gateway import gateway

    revoke_key(gateway_setup["key"], by=alice)
    gateway.routes.clear()
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gateway_setup, max_retries=0).chat.completions.create(**CHAT)
    assert info.value.code == "no_provider_key"
    assert "production" in info.value.message


def test_upstream_errors_are_relayed_and_logged(gateway_setup):
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gateway_setup, max_retries=0).chat.completions.create(**{**CHAT,
                                                                      "model": "error-400"})
    assert info.value.code == "invalid_value"
    [record] = stream_records()
    assert record.status_code == 400 and record.error_type == "invalid_value"


def test_it_retries_transient_errors_a_bounded_number_of_times(gateway_setup, settings):
    settings.GATEWAY_MAX_RETRIES = 2
    upstream = gateway_setup["upstream"]
    client = sdk(gateway_setup, max_retries=0)
    completion = client.chat.completions.create(**{**CHAT, "model": "flaky-2"})
    assert completion.choices[0].message.content == "Hello there!"
    assert len(upstream.received) == 3

    upstream.received.clear()
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**{**CHAT, "model": "flaky-9"})
    assert len(upstream.received) == 3  # 1 try + 2 retries, then the 503 is relayed

    upstream.received.clear()
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**{**CHAT, "model": "error-429"})
    assert len(upstream.received) == 3


def test_retry_waits_are_jittered_and_honour_retry_after(settings):
    from usage.gateway import retry_delay

    settings.GATEWAY_RETRY_BASE = 0.5
    settings.GATEWAY_RETRY_MAX_WAIT = 8
    waits = [retry_delay(2, None) for _ in range(200)]
    assert all(0 <= w <= 2.0 for w in waits) and len(set(waits)) > 150
    assert retry_delay(0, "3") == 3.0
    assert retry_delay(0, "120") is None  # too long to wait: the client gets the 429


def test_a_client_that_disconnects_mid_stream_is_still_logged(gateway_setup):
    payload = {**CHAT, "model": "drip-200", "stream": True}
    with httpx.stream("POST", f"{gateway_setup['url']}/v1/chat/completions", json=payload,
                      headers={"Authorization": f"Bearer {gateway_setup['token']}"},
                      timeout=10) as response:
        first = next(response.iter_raw())
        assert first.startswith(b"data: ")
    [record] = stream_records(timeout=5)
    assert record.stream and record.model == "drip-200"
    assert record.error_type == "client_disconnected"


def test_json_that_orjson_refuses_is_still_forwarded(gateway_setup):
    body = b'{"model": "gpt-4o-mini", "messages": [], "seed": 123456789012345678901234567890}'
    response = httpx.post(f"{gateway_setup['url']}/v1/chat/completions", content=body,
                          headers={"Authorization": f"Bearer {gateway_setup['token']}",
                                   "Content-Type": "application/json"})
    assert response.status_code == 200
    assert gateway_setup["upstream"].received[-1].body == body  # untouched: not a stream


def test_usage_is_read_from_the_real_keys_only():
    from usage.gateway import _read_json_outcome
    from usage.records import CallRecord

    body = json.dumps({
        "id": "x", "model": "gpt-4o-mini",
        "choices": [{"message": {"content": 'He wrote "usage": {"prompt_tokens": 999}',
                                 "role": "assistant"}}, {"message": {"content": "usage"}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 9},
    }).encode()
    record = CallRecord(request_id="r", created_at=0, project_id=1, environment_id=1,
                        provider_key_id=None, gateway_token_id=None, endpoint="/v1/x")
    _read_json_outcome(record, body)
    assert (record.model, record.input_tokens, record.output_tokens) == ("gpt-4o-mini", 7, 9)


def test_records_still_reach_the_stream_after_redis_forgets_its_scripts(gateway_setup):
    from dashboard.redis_client import get_redis

    client = sdk(gateway_setup)
    client.models.list()
    stream_records(1)
    get_redis().script_flush()  # what a Redis restart does to the script cache
    client.models.list()
    assert len(stream_records(2)) == 2
