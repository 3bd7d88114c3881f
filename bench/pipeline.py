"""Benchmark: call records through the Redis stream into Postgres, and exactness under kills.

    .venv/bin/python bench/pipeline.py [--records 200000] [--workers 2] [--kills 10]

Uses DATABASE_URL and REDIS_URL from the environment; without them, the local Postgres
(database keymeter_bench, created when missing) and Redis db 15. Makes its own project,
environments and tokens, and deletes them at the end (--keep to look at them).

Run 1 pushes the records into km:calls and times flush workers (subprocesses running
usage.pipeline.flush_calls) until the stream is drained: calls/s against the 5,000/s
target. Run 2 pushes a fresh set and SIGKILLs the worker --kills times while it works,
restarting it each time (its acks are delayed by up to --ack-delay-ms so that some
kills land between commit and ack); it then checks that ApiCall rows == records pushed == the sum
of DailyUsage.calls (and HourlyUsage), exactly, with costs matching to 1e-10 USD.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/keymeter_bench"
TARGET = 5_000  # calls/s, from the issue
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "bench-unpriced")


def _environment() -> None:
    if "DATABASE_URL" not in os.environ:
        os.environ["DATABASE_URL"] = DEFAULT_DB
        _create_default_database()
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    if "VAULT_KEYS" not in os.environ:
        from cryptography.fernet import Fernet

        os.environ["VAULT_KEYS"] = Fernet.generate_key().decode()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def _create_default_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = 'keymeter_bench'").fetchone():
            c.execute("CREATE DATABASE keymeter_bench")


def _setup_django() -> None:
    _environment()
    import django

    django.setup()


# Worker (a subprocess): flush until the stream and the group's pending list are empty.


def worker(batch_size: int, claim_idle_ms: int, ack_delay_ms: int) -> None:
    _setup_django()
    from dashboard.redis_client import get_redis
    from usage import pipeline

    r = get_redis()
    if ack_delay_ms:
        # Bench only: a slow ack (as with a distant Redis) widens the window between
        # commit and ack, so some of the supervisor's kills land in it.
        ack = pipeline._ack

        def slow_ack(client, entry_ids):
            time.sleep(random.uniform(0, ack_delay_ms / 1000))
            ack(client, entry_ids)

        pipeline._ack = slow_ack
    while True:
        result = pipeline.flush_calls(batch_size, claim_idle_ms=claim_idle_ms)
        if result.duplicates:
            r.hincrby("bench:stats", "duplicates", result.duplicates)
        if result.reclaimed:
            r.hincrby("bench:stats", "reclaimed", result.reclaimed)
        if result.read == 0:
            if r.xlen(pipeline.STREAM) == 0:
                return
            time.sleep(0.05)  # only a dead worker's entries are left: wait until claimable


def _start_worker(batch_size: int, claim_idle_ms: int, ack_delay_ms: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", "--batch-size", str(batch_size),
         "--claim-idle-ms", str(claim_idle_ms), "--ack-delay-ms", str(ack_delay_ms)],
        cwd=ROOT, env=os.environ.copy(),
    )  # fmt: skip


# Supervisor


def _fixtures(tag: str):
    from accounts.models import User
    from accounts.projects import create_project
    from accounts.tokens import create_gateway_token

    owner, _ = User.objects.get_or_create(email="bench@keymeter.local")
    project = create_project(f"Bench {tag}", f"bench-{tag}", owner=owner)
    environments = list(project.environments.all())
    tokens = [create_gateway_token(env, f"bench-{i}")[0] for env in environments for i in (1, 2)]
    return project, tokens


def _push(project, tokens, count: int) -> float:
    from dashboard.redis_client import get_redis
    from usage import pipeline
    from usage.records import CallRecord

    rng = random.Random(count)
    # In time order, as the gateway pushes them: the calls of two days, so batches cross
    # hour and day buckets.
    start = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    step = 2 * 86400 / count
    r = get_redis()
    began = time.perf_counter()
    for first in range(0, count, 5000):
        with r.pipeline(transaction=False) as pipe:
            for i in range(first, min(first + 5000, count)):
                token = rng.choice(tokens)
                inp = rng.randint(10, 4000)
                out = rng.randint(1, 1500)
                record = CallRecord(
                    request_id=f"bench_{uuid.uuid4().hex}",
                    created_at=start + i * step,
                    project_id=project.pk, environment_id=token.environment_id,
                    provider_key_id=None, gateway_token_id=token.pk,
                    endpoint="/v1/chat/completions", model=rng.choice(MODELS),
                    status_code=rng.choice((200,) * 30 + (429, 500)), stream=rng.random() < 0.5,
                    input_tokens=inp, cached_input_tokens=rng.randint(0, inp // 2),
                    output_tokens=out, reasoning_tokens=rng.randint(0, out // 3),
                    latency_ms=rng.randint(80, 9000), ttfb_ms=rng.randint(50, 800),
                )  # fmt: skip
                pipe.xadd(pipeline.STREAM, {"r": record.to_json()})
            pipe.execute()
    return time.perf_counter() - began


def _check(project, pushed: int) -> tuple[bool, str]:
    from django.db.models import Count, Sum

    from usage.models import ApiCall, DailyUsage, HourlyUsage

    calls = ApiCall.objects.filter(project=project).aggregate(n=Count("id"), cost=Sum("cost_usd"))
    daily = DailyUsage.objects.filter(project=project).aggregate(
        n=Sum("calls"), cost=Sum("cost_usd")
    )
    hourly = HourlyUsage.objects.filter(project=project).aggregate(n=Sum("calls"))
    exact = pushed == calls["n"] == daily["n"] == hourly["n"] and calls["cost"] == daily["cost"]
    text = (
        f"pushed {pushed:,} = ApiCall rows {calls['n']:,} = sum DailyUsage.calls "
        f"{daily['n']:,} = sum HourlyUsage.calls {hourly['n']:,}; cost ApiCall "
        f"${calls['cost'] or Decimal(0):.10f} vs DailyUsage ${daily['cost'] or Decimal(0):.10f}"
    )
    return exact, text


def _prepare_stream() -> None:
    from dashboard.redis_client import get_redis
    from usage import pipeline

    r = get_redis()
    if r.exists(pipeline.STREAM) and r.xlen(pipeline.STREAM):
        sys.exit(f"{pipeline.STREAM} holds {r.xlen(pipeline.STREAM)} records: point REDIS_URL "
                 "at a spare Redis database for the benchmark.")  # fmt: skip
    r.delete(pipeline.STREAM, "bench:stats")  # an empty stream's old consumers


def run_throughput(args) -> bool:
    from django.utils.crypto import get_random_string

    _prepare_stream()
    project, tokens = _fixtures(get_random_string(6).lower())
    push_s = _push(project, tokens, args.records)
    print(f"run 1: pushed {args.records:,} records in {push_s:.1f} s "
          f"({args.records / push_s:,.0f}/s XADD)")  # fmt: skip
    began = time.perf_counter()
    workers = [_start_worker(args.batch_size, args.claim_idle_ms) for _ in range(args.workers)]
    for w in workers:
        w.wait()
    took = time.perf_counter() - began
    rate = args.records / took
    print(
        f"run 1: {args.workers} flush worker(s), batch {args.batch_size}: drained in "
        f"{took:.1f} s = {rate:,.0f} calls/s (target {TARGET:,}/s: {rate / TARGET:.2f}x)"
    )
    exact, text = _check(project, args.records)
    print(f"run 1: {'EXACT' if exact else 'MISMATCH'}: {text}")
    if not args.keep:
        project.delete()
    return exact


def run_with_kills(args) -> bool:
    from django.utils.crypto import get_random_string

    from dashboard.redis_client import get_redis
    from usage import pipeline

    _prepare_stream()
    r = get_redis()
    project, tokens = _fixtures(get_random_string(6).lower())
    _push(project, tokens, args.records)
    rng = random.Random()
    kills = 0
    began = time.perf_counter()
    proc = _start_worker(args.batch_size, args.claim_idle_ms, args.ack_delay_ms)
    # Kill when the stream has shrunk past each of `kills` evenly spaced marks, at a
    # random moment inside a flush (read, insert, commit, ack: wherever it happens to be).
    marks = [args.records * (1 - (k + 1) / (args.kills + 2)) for k in range(args.kills)]
    while proc.poll() is None or kills < args.kills:
        if proc.poll() is not None:  # finished early: nothing left to kill
            break
        if kills < args.kills and r.xlen(pipeline.STREAM) <= marks[kills]:
            time.sleep(rng.uniform(0, 1.0))  # about two flush cycles
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = _start_worker(args.batch_size, args.claim_idle_ms, args.ack_delay_ms)
        time.sleep(0.01)
    proc.wait()
    took = time.perf_counter() - began
    stats = {k.decode(): int(v) for k, v in r.hgetall("bench:stats").items()}
    print(
        f"run 2: {args.records:,} records, acks delayed 0-{args.ack_delay_ms} ms, worker "
        f"SIGKILLed {kills} times and restarted: "
        f"drained in {took:.1f} s = {args.records / took:,.0f} calls/s; after the kills "
        f"{stats.get('reclaimed', 0):,} entries were reclaimed from dead workers, "
        f"{stats.get('duplicates', 0):,} of them already committed (not counted again)"
    )
    exact, text = _check(project, args.records)
    print(f"run 2: {'EXACT' if exact else 'MISMATCH'}: {text}")
    if not args.keep:
        project.delete()
    return exact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--claim-idle-ms", type=int, default=1000,
                        help="reclaim a dead worker's entries after this long")  # fmt: skip
    parser.add_argument("--ack-delay-ms", type=int, default=150,
                        help="run 2: delay each ack by up to this much")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the bench projects")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.batch_size, args.claim_idle_ms, args.ack_delay_ms)
        return 0
    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", interactive=False, verbosity=0)
    print(f"database {connection.vendor} {connection.settings_dict['NAME']}, "
          f"redis {os.environ['REDIS_URL']}, {os.cpu_count()} CPUs")  # fmt: skip
    ok = run_throughput(args)
    ok = run_with_kills(args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
