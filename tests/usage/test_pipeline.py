"""The call pipeline end to end on the real database and Redis: enqueue → stream →
flush → ApiCall rows and rollups, and what happens when things fail half-way."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.models import Environment
from dashboard import localmode
from dashboard.redis_client import get_redis
from usage import pipeline
from usage.models import ApiCall, DailyUsage, HourlyUsage, ModelPrice
from usage.records import CallRecord

NOON = datetime(2026, 4, 15, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture(autouse=True)
def _spool_in_tmp(settings, tmp_path):
    settings.SPOOL_DIR = tmp_path / "spool"
    pipeline._redis_down_until.clear()


@pytest.fixture
def prices(db):
    ModelPrice.objects.all().delete()  # only the prices these tests set
    return ModelPrice.objects.create(
        model="gpt-4o-mini", effective_from=datetime(2024, 7, 18, tzinfo=UTC),
        input_per_1m=Decimal("0.15"), cached_input_per_1m=Decimal("0.075"),
        output_per_1m=Decimal("0.60"),
    )  # fmt: skip


@pytest.fixture
def production(alpha) -> Environment:
    return alpha.environments.get(name="production")


def make_record(env: Environment, **fields) -> CallRecord:
    values = {
        "request_id": f"req_{uuid.uuid4().hex}", "created_at": NOON,
        "project_id": env.project_id, "environment_id": env.pk, "provider_key_id": None,
        "gateway_token_id": None, "endpoint": "/v1/chat/completions", "model": "gpt-4o-mini",
        "input_tokens": 100, "output_tokens": 300, "latency_ms": 120,
    }  # fmt: skip
    values.update(fields)
    return CallRecord(**values)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_seed_example_costs_exactly_0_195_a_day(prices, production):
    for _ in range(1000):
        pipeline.enqueue(make_record(production))

    result = pipeline.drain()

    assert (result.read, result.inserted, result.duplicates) == (1000, 1000, 0)
    assert ApiCall.objects.count() == 1000
    assert ApiCall.objects.filter(cost_usd=Decimal("0.000195")).count() == 1000
    day = DailyUsage.objects.get()
    assert day.day.isoformat() == "2026-04-15"
    assert (day.calls, day.input_tokens, day.output_tokens) == (1000, 100_000, 300_000)
    assert day.cost_usd == Decimal("0.195")
    assert day.unpriced_calls == 0
    assert (day.latency_ms_sum, day.latency_ms_max) == (120_000, 120)
    assert HourlyUsage.objects.get().cost_usd == Decimal("0.195")
    assert get_redis().xlen(pipeline.STREAM) == 0  # acked and deleted


def test_it_counts_nothing_twice_when_flushed_twice(prices, production):
    pipeline.enqueue(make_record(production))
    first = pipeline.flush_calls()
    second = pipeline.flush_calls()

    assert (first.inserted, second.read) == (1, 0)
    assert DailyUsage.objects.get().calls == 1


def test_it_counts_a_record_enqueued_twice_once(prices, production):
    record = make_record(production)
    pipeline.enqueue(record)
    pipeline.flush_calls()
    pipeline.enqueue(record)
    pipeline.enqueue(record)

    result = pipeline.flush_calls()

    assert (result.read, result.inserted, result.duplicates) == (2, 0, 2)
    assert ApiCall.objects.count() == 1
    assert DailyUsage.objects.get().calls == 1
    assert DailyUsage.objects.get().cost_usd == Decimal("0.000195")


def test_a_flush_killed_between_commit_and_ack_is_replayed_without_double_counting(
    prices, production, monkeypatch
):
    for _ in range(5):
        pipeline.enqueue(make_record(production))

    def killed(*args):
        raise SystemExit("worker killed after commit, before ack")

    with monkeypatch.context() as m:
        m.setattr(pipeline, "_ack", killed)
        with pytest.raises(SystemExit):
            pipeline.flush_calls(consumer="worker-1")
    assert ApiCall.objects.count() == 5  # committed
    assert get_redis().xpending(pipeline.STREAM, pipeline.GROUP)["pending"] == 5

    result = pipeline.flush_calls(consumer="worker-1")

    assert (result.read, result.inserted, result.duplicates) == (5, 0, 5)
    assert DailyUsage.objects.get().calls == 5
    assert get_redis().xpending(pipeline.STREAM, pipeline.GROUP)["pending"] == 0
    assert get_redis().xlen(pipeline.STREAM) == 0


def test_a_flush_that_fails_before_commit_stores_nothing_and_retries(
    prices, production, monkeypatch
):
    pipeline.enqueue(make_record(production))

    def broken(calls):
        raise RuntimeError("database went away mid-transaction")

    with monkeypatch.context() as m:
        m.setattr(pipeline.rollups, "add_to_rollups", broken)
        with pytest.raises(RuntimeError):
            pipeline.flush_calls(consumer="worker-1")
    assert ApiCall.objects.count() == 0  # the insert was rolled back with the rollups

    assert pipeline.flush_calls(consumer="worker-1").inserted == 1
    assert DailyUsage.objects.get().calls == 1


def test_another_worker_reclaims_the_entries_of_a_dead_one(prices, production):
    r = get_redis()
    for _ in range(3):
        pipeline.enqueue(make_record(production))
    pipeline.ensure_group(r)
    # A worker read them and died before storing anything.
    r.xreadgroup(pipeline.GROUP, "dead-worker", {pipeline.STREAM: ">"}, count=10)

    young = pipeline.flush_calls(consumer="live-worker")  # not idle long enough yet
    assert (young.read, ApiCall.objects.count()) == (0, 0)

    result = pipeline.flush_calls(consumer="live-worker", claim_idle_ms=0)

    assert (result.reclaimed, result.inserted) == (3, 3)
    assert DailyUsage.objects.get().calls == 3
    assert r.xpending(pipeline.STREAM, pipeline.GROUP)["pending"] == 0


def test_it_spools_while_redis_is_down_and_replays_when_it_is_back(prices, production, settings):
    real_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/5"
    records = [make_record(production) for _ in range(20)]
    for record in records[:10]:
        pipeline.enqueue(record)

    async def gateway_calls():
        for record in records[10:]:
            await pipeline.enqueue_async(record)

    asyncio.run(gateway_calls())
    spooled = (settings.SPOOL_DIR / pipeline.SPOOL_NAME).read_bytes().splitlines()
    assert len(spooled) == 20

    settings.REDIS_URL = real_url
    result = pipeline.drain()

    assert (result.replayed, result.inserted) == (20, 20)
    assert set(ApiCall.objects.values_list("request_id", flat=True)) == {
        r.request_id for r in records
    }
    assert DailyUsage.objects.get().calls == 20
    assert not list(settings.SPOOL_DIR.glob("*.spool"))
    assert pipeline.replay_spool() == 0


def test_a_spool_replayed_twice_counts_each_call_once(prices, production, settings):
    record = make_record(production)
    pipeline.spool(record.to_json())
    assert pipeline.replay_spool() == 1
    # A replay that died after pushing its file, before deleting it, pushes it again.
    (settings.SPOOL_DIR / "replay-1-1.spool").write_bytes(record.to_json() + b"\n")

    result = pipeline.drain()

    assert (result.replayed, result.read, result.inserted, result.duplicates) == (1, 2, 1, 1)
    assert DailyUsage.objects.get().calls == 1


def test_an_unpriced_model_is_flagged_not_free(prices, production):
    pipeline.enqueue(make_record(production, model="acme-llm-9"))
    pipeline.enqueue(make_record(production))

    pipeline.flush_calls()

    assert ApiCall.objects.get(model="acme-llm-9").cost_usd is None
    unpriced = DailyUsage.objects.get(model="acme-llm-9")
    assert (unpriced.calls, unpriced.unpriced_calls, unpriced.cost_usd) == (1, 1, Decimal(0))
    assert DailyUsage.objects.get(model="gpt-4o-mini").unpriced_calls == 0


def test_buckets_are_hours_and_days_of_the_time_zone(prices, production, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    at = datetime(2026, 3, 31, 17, 30, tzinfo=UTC).timestamp()
    pipeline.enqueue(make_record(production, created_at=at))

    pipeline.flush_calls()

    assert DailyUsage.objects.get().day.isoformat() == "2026-04-01"
    # 01:00 in Shanghai is 17:00 UTC.
    assert HourlyUsage.objects.get().hour == datetime(2026, 3, 31, 17, 0, tzinfo=UTC)


def test_it_sums_tokens_errors_and_latency_per_bucket(prices, production, alpha):
    staging = alpha.environments.get(name="staging")
    pipeline.enqueue(
        make_record(
            production,
            input_tokens=1000,
            cached_input_tokens=400,
            output_tokens=50,
            reasoning_tokens=20,
            latency_ms=900,
        )
    )
    pipeline.enqueue(
        make_record(
            production,
            status_code=500,
            input_tokens=0,
            output_tokens=0,
            error_type="server_error",
            latency_ms=30,
        )
    )
    pipeline.enqueue(make_record(staging))

    pipeline.flush_calls()

    prod = DailyUsage.objects.get(environment=production)
    assert (prod.calls, prod.errors) == (2, 1)
    assert (prod.input_tokens, prod.cached_input_tokens) == (1000, 400)
    assert (prod.output_tokens, prod.reasoning_tokens) == (50, 20)
    # 600 × 0.15 + 400 × 0.075 + 50 × 0.60 per 1M; the failed call had nothing to bill.
    assert prod.cost_usd == Decimal("0.00015")
    assert (prod.unpriced_calls, prod.latency_ms_sum, prod.latency_ms_max) == (0, 930, 900)
    assert DailyUsage.objects.get(environment=staging).calls == 1


def test_a_poison_record_is_set_aside_without_blocking_the_stream(prices, production):
    r = get_redis()
    r.xadd(pipeline.STREAM, {"r": b"{not json"})
    r.xadd(pipeline.STREAM, {"r": make_record(production, input_tokens=-5).to_json()})
    pipeline.enqueue(make_record(production))

    result = pipeline.flush_calls()

    assert (result.read, result.poison, result.inserted) == (3, 2, 1)
    assert r.xlen(pipeline.STREAM) == 0
    assert r.xlen(pipeline.DEAD_LETTERS) == 2
    assert pipeline.flush_calls().read == 0


def test_calls_of_a_deleted_project_are_skipped(prices, production, beta):
    gone = beta.environments.get(name="production")
    pipeline.enqueue(make_record(gone))
    beta.delete()
    pipeline.enqueue(make_record(production))

    result = pipeline.flush_calls()

    assert (result.skipped, result.inserted) == (1, 1)
    assert get_redis().xlen(pipeline.STREAM) == 0
    assert ApiCall.objects.get().project_id == production.project_id


def test_the_command_flushes_and_prints_counts(prices, production, capsys):
    for _ in range(3):
        pipeline.enqueue(make_record(production))

    call_command("flush_usage")

    out = capsys.readouterr().out
    assert "read 3, inserted 3, duplicates 0" in out
    assert DailyUsage.objects.get().calls == 3


def test_the_celery_task_drains_the_stream(prices, production):
    from usage.tasks import flush_calls

    for _ in range(3):
        pipeline.enqueue(make_record(production))

    result = flush_calls()

    assert result["inserted"] == 3
    assert result["cost_usd"] == "0.000585"


def test_the_gateway_enqueues_from_its_event_loop(prices, production):
    records = [make_record(production) for _ in range(3)]

    async def gateway_calls():
        for record in records:
            await pipeline.enqueue_async(record)

    asyncio.run(gateway_calls())
    asyncio.run(gateway_calls())  # a new loop gets its own client

    assert pipeline.flush_calls().inserted == 3
    assert DailyUsage.objects.get().calls == 3


def _spool_lines(worker: int, count: int) -> None:
    for i in range(count):
        pipeline.spool(b'{"worker":%d,"i":%d}' % (worker, i))
    os._exit(0)  # leave the parent's database connection and Redis pool alone


def test_several_processes_spool_at_once_while_a_replay_runs(settings):
    settings.SPOOL_DIR.mkdir(parents=True)
    fork = multiprocessing.get_context("fork")
    writers = [fork.Process(target=_spool_lines, args=(w, 3000)) for w in range(4)]
    for writer in writers:
        writer.start()
    pushed = 0
    while any(writer.is_alive() for writer in writers):
        pushed += pipeline.replay_spool()
    for writer in writers:
        writer.join()
    pushed += pipeline.replay_spool()

    entries = get_redis().xrange(pipeline.STREAM)
    lines = [fields[b"r"] for _, fields in entries]
    assert pushed == len(lines) == 12000  # every line once: none lost, none cut, none twice
    assert set(lines) == {b'{"worker":%d,"i":%d}' % (w, i) for w in range(4) for i in range(3000)}


def test_the_gateway_replays_its_spool_as_soon_as_redis_is_back(
    production, settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(pipeline, "REDIS_RETRY_SECONDS", 0.0)
    sock = tmp_path / "redis.sock"
    settings.REDIS_URL = f"unix://{sock}"  # a Redis server that is not running yet
    records = [make_record(production) for _ in range(6)]

    async def gateway_calls(batch):
        for record in batch:
            await pipeline.enqueue_async(record)

    asyncio.run(gateway_calls(records[:5]))
    assert len((settings.SPOOL_DIR / pipeline.SPOOL_NAME).read_bytes().splitlines()) == 5

    server = localmode.start_redis(sock)
    try:
        asyncio.run(gateway_calls(records[5:]))
        deadline = time.monotonic() + 10
        while get_redis().xlen(pipeline.STREAM) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        entries = get_redis().xrange(pipeline.STREAM)
        ids = [CallRecord.from_json(fields[b"r"]).request_id for _, fields in entries]
        assert sorted(ids) == sorted(r.request_id for r in records)
        assert not list(settings.SPOOL_DIR.glob("*.spool"))
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_burst_of_concurrent_gateway_calls_is_queued_not_spooled(production, settings):
    records = [make_record(production) for _ in range(500)]

    async def burst():
        await asyncio.gather(*(pipeline.enqueue_async(record) for record in records))

    asyncio.run(burst())

    assert get_redis().xlen(pipeline.STREAM) == 500
    assert not (settings.SPOOL_DIR / pipeline.SPOOL_NAME).exists()
