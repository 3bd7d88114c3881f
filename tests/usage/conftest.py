"""A real keymeter ASGI server and a real fake-OpenAI upstream, both under uvicorn."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.keys import add_provider_key
from accounts.tokens import create_gateway_token
from dashboard.redis_client import get_redis
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import serve
from usage.models import ModelPrice
from usage.records import CallRecord

PROVIDER_SECRET = "sk-proj-" + "Gw7xQ2pL9s" * 5 + "T3BlbkFJ" + "Zk4mN8vR2t" * 5 + "Ab12"


@pytest.fixture(scope="session")
def upstream():
    fake = FakeUpstream()
    with serve(fake) as url:
        fake.url = url
        yield fake


@pytest.fixture(scope="session")
def keymeter_url():
    from dashboard.asgi import application

    with serve(application) as url:
        yield url


@pytest.fixture
def gateway_setup(transactional_db, alpha, alice, upstream, keymeter_url, settings):
    """alpha/production with a provider key pointing at the fake upstream, and a km_ token."""
    from usage.gateway import gateway

    settings.GATEWAY_RETRY_BASE = 0.01
    # Tests on committed data (transactional_db) empty every table afterwards, the
    # price list loaded by the migration included: put back the one these tests use.
    ModelPrice.objects.get_or_create(
        model="gpt-4o-mini", effective_from=datetime(2025, 1, 1, tzinfo=UTC),
        defaults={"input_per_1m": Decimal("0.15"), "cached_input_per_1m": Decimal("0.075"),
                  "output_per_1m": Decimal("0.60")})
    from usage import hardlimit

    hardlimit.prices.book = None  # reload: the gateway caches the price list
    upstream.received.clear()
    upstream.failures.clear()
    gateway.routes.clear()
    environment = alpha.environments.get(name="production")
    key = add_provider_key(environment, PROVIDER_SECRET, base_url=f"{upstream.url}/v1", by=alice)
    token, plaintext = create_gateway_token(environment, "ci", by=alice)
    yield {"url": keymeter_url, "token": plaintext, "token_row": token, "key": key,
           "environment": environment, "upstream": upstream}
    gateway.routes.clear()


def stream_records(count: int = 1, timeout: float = 5.0) -> list[CallRecord]:
    """The call records the gateway pushed, once `count` of them are there."""
    redis = get_redis()
    deadline = time.monotonic() + timeout
    while True:
        entries = redis.xrange("km:calls")
        if len(entries) >= count or time.monotonic() > deadline:
            return [CallRecord.from_json(fields[b"r"]) for _, fields in entries]
        time.sleep(0.02)
