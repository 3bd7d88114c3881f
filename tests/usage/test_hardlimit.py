"""The hard budget limit at the gateway, under real concurrency."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import openai
import pytest

from tests.usage.conftest import stream_records

CALL_COST = Decimal("0.000195")  # 100 input + 300 output tokens of gpt-4o-mini
CHAT = {"model": "gpt-4o-mini", "max_tokens": 400,
        "messages": [{"role": "user", "content": "Hi"}]}


def set_hard_limit(project, limit: str, alice):
    from usage.budgets import set_budget

    return set_budget(project, monthly_limit_usd=Decimal(limit), thresholds=[80, 100],
                      hard_limit=True, extra_recipients=[], by=alice, ip=None)


async def _fire(url: str, token: str, count: int) -> list:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)

    async def one():
        try:
            await client.chat.completions.create(**CHAT)
            return "ok"
        except openai.RateLimitError as exc:
            return exc

    try:
        return await asyncio.gather(*(one() for _ in range(count)))
    finally:
        await client.close()


def test_200_concurrent_calls_overshoot_by_at_most_one_call(gateway_setup, alpha, alice):
    set_hard_limit(alpha, "0.01", alice)
    outcomes = asyncio.run(_fire(gateway_setup["url"], gateway_setup["token"], 200))

    allowed = [o for o in outcomes if o == "ok"]
    refused = [o for o in outcomes if o != "ok"]
    spent = CALL_COST * len(allowed)
    print(f"hard limit $0.01: {len(allowed)} of 200 concurrent calls allowed, spent ${spent}, "
          f"overshoot ${max(spent - Decimal('0.01'), Decimal(0))}")
    assert spent <= Decimal("0.01") + CALL_COST, f"{len(allowed)} calls went through"
    assert len(allowed) >= 40  # the limit is used, not refused early
    assert len(refused) == 200 - len(allowed)
    error = refused[0]
    assert error.code == "budget_exceeded" and error.type == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    assert "Alpha" in error.message and "$0.01" in error.message
    assert len(gateway_setup["upstream"].received) == len(allowed)
    records = stream_records(200)
    assert sum(r.status_code == 429 for r in records) == len(refused)


def test_raising_the_limit_lets_calls_through_at_once(gateway_setup, alpha, alice):
    set_hard_limit(alpha, "0.01", alice)  # room for 51 calls of $0.000195
    client = openai.OpenAI(base_url=f"{gateway_setup['url']}/v1",
                           api_key=gateway_setup["token"], max_retries=0)
    made = 0
    with pytest.raises(openai.RateLimitError):
        for _ in range(60):
            client.chat.completions.create(**CHAT)
            made += 1
    assert 40 <= made <= 51
    set_hard_limit(alpha, "5.00", alice)
    client.chat.completions.create(**CHAT)


def test_without_a_hard_limit_nothing_is_refused(gateway_setup, alpha, alice):
    from usage.budgets import set_budget

    set_budget(alpha, monthly_limit_usd=Decimal("0.01"), thresholds=[80, 100],
               hard_limit=False, extra_recipients=[], by=alice, ip=None)
    client = openai.OpenAI(base_url=f"{gateway_setup['url']}/v1",
                           api_key=gateway_setup["token"], max_retries=0)
    for _ in range(60):  # $0.0117: past the (soft) limit
        client.chat.completions.create(**CHAT)


def test_switching_a_hard_limit_on_counts_the_month_so_far(gateway_setup, alpha, alice):
    from usage import pipeline
    from usage.budgets import set_budget

    client = openai.OpenAI(base_url=f"{gateway_setup['url']}/v1",
                           api_key=gateway_setup["token"], max_retries=0)
    set_hard_limit(alpha, "0.01", alice)
    for _ in range(10):
        client.chat.completions.create(**CHAT)
    set_budget(alpha, monthly_limit_usd=Decimal("0.01"), thresholds=[80, 100],
               hard_limit=False, extra_recipients=[], by=alice, ip=None)
    for _ in range(50):  # $0.0117 in all: past the limit while it was soft
        client.chat.completions.create(**CHAT)
    stream_records(60)
    pipeline.flush_calls()
    set_hard_limit(alpha, "0.01", alice)
    time.sleep(1.1)  # GATEWAY_BUDGET_CACHE_SECONDS: how long "no hard limit" is remembered
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**CHAT)
