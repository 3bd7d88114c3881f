from __future__ import annotations

import time
from decimal import Decimal

from accounts.keys import add_provider_key
from accounts.tokens import create_gateway_token
from usage import hardlimit, pipeline
from usage.records import CallRecord

SECRET = "sk-proj-" + "L4st" * 12 + "T3BlbkFJ" + "Us3d" * 12


def _record(environment, key, token, created_at: float, **fields) -> CallRecord:
    return CallRecord(request_id=f"req_{created_at}_{fields.get('source', 'g')}",
                      created_at=created_at, project_id=environment.project_id,
                      environment_id=environment.pk, provider_key_id=key.pk,
                      gateway_token_id=token.pk, endpoint="/v1/chat/completions",
                      model="gpt-4o-mini", input_tokens=100, output_tokens=300, **fields)


def test_the_flush_moves_last_used_forward_only(alpha, alice, settings, tmp_path):
    settings.SPOOL_DIR = str(tmp_path)
    environment = alpha.environments.get(name="production")
    key = add_provider_key(environment, SECRET, by=alice)
    token, _ = create_gateway_token(environment, "ci", by=alice)
    now = time.time()
    pipeline.enqueue(_record(environment, key, token, now - 60))
    pipeline.enqueue(_record(environment, key, token, now - 10))
    pipeline.flush_calls()
    key.refresh_from_db()
    token.refresh_from_db()
    assert abs(key.last_used_at.timestamp() - (now - 10)) < 0.01
    assert token.last_used_at == key.last_used_at

    pipeline.enqueue(_record(environment, key, token, now - 3600))  # a late, older record
    pipeline.flush_calls()
    key.refresh_from_db()
    assert abs(key.last_used_at.timestamp() - (now - 10)) < 0.01


def test_ingested_spend_raises_the_live_budget_counter(alpha, alice, settings, tmp_path):
    from dashboard.redis_client import get_redis

    settings.SPOOL_DIR = str(tmp_path)
    environment = alpha.environments.get(name="production")
    key = add_provider_key(environment, SECRET, by=alice)
    token, _ = create_gateway_token(environment, "ci", by=alice)
    now = time.time()
    live = hardlimit.live_key(alpha.pk, hardlimit.month_of(now))
    get_redis().set(live, 0)
    pipeline.enqueue(_record(environment, key, token, now, source="ingest"))
    pipeline.enqueue(_record(environment, key, token, now + 1))  # gateway: settled there
    pipeline.flush_calls()
    assert hardlimit.from_units(int(get_redis().get(live))) == Decimal("0.000195")
