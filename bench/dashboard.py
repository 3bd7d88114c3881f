"""Benchmark: dashboard pages at 10 k, 1 M and 10 M logged calls.

    .venv/bin/python bench/dashboard.py [--levels 10000,1000000,10000000] [--rounds 60]
                                        [--skip-load]

DATABASE_URL (default postgres://postgres@127.0.0.1:5432/keymeter_dash_bench) names the
base: each level gets its own database beside it (…_10k, …_1m, …_10m, created when
missing), so all levels can be measured side by side. REDIS_URL defaults to
redis://127.0.0.1:6379/14. Into each level's database it makes 3
projects × 3 environments with keys (one rotated halfway) and tokens, then for each
level loads that many calls over 90 days and 6 models (one unpriced):

  1. a plan of call buckets (project, environment, key, token, model, hour → n calls)
     is computed in Python and COPied into a temporary table;
  2. the ApiCall rows are expanded from it in Postgres (INSERT … SELECT over
     generate_series), with the table's secondary indexes and constraints dropped
     during the load and rebuilt afterwards;
  3. HourlyUsage and DailyUsage rows are computed from the same plan (the same
     per-call rules: every 40th call fails with no tokens; latency base + (g·37 mod
     500) ms) and COPied — then checked against the call log with one SUM query.

Then one uvicorn process per level serves its database, an httpx client logs in as a
project member of each, and the overview, the project page and the usage explorer
are requested round-robin across the levels (10 warm-up rounds, then --rounds timed
ones), so that other load on the machine falls on every level alike; p50/p95 are
printed per page and level, with the ratio 10 M / 10 k. Targets: p95 < 150 ms and
ratio ≤ 1.5. The explorer's call view (the one page that reads ApiCall, by keyset)
is measured too, for information.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/keymeter_dash_bench"
P95_TARGET_MS = 150
RATIO_TARGET = 1.5
DAYS = 90
ERROR_EVERY = 40  # every 40th call of a bucket fails (429, no tokens, no cost)
TEN = Decimal("1e-10")
# model: (input, cached, output, reasoning tokens per call, $ per 1M input/cached/output,
#         latency base ms, weight); None prices = unpriced
MODELS = {
    "gpt-4o-mini": (900, 200, 300, 0, ("0.15", "0.075", "0.60"), 600, 10),
    "gpt-4o": (1200, 300, 400, 0, ("2.50", "1.25", "10.00"), 900, 3),
    "gpt-4.1-mini": (1000, 0, 350, 0, ("0.40", "0.10", "1.60"), 700, 4),
    "o3-mini": (700, 0, 900, 600, ("1.10", "0.55", "4.40"), 2500, 1),
    "text-embedding-3-small": (500, 0, 0, 0, ("0.02", "0.02", "0"), 150, 6),
    "bench-unpriced": (800, 0, 250, 0, None, 800, 0.5),
}
PROJECTS = (("Bench Shop", "bench-shop", 5), ("Bench Search", "bench-search", 2),
            ("Bench Support", "bench-support", 1))  # fmt: skip
ENVIRONMENTS = {"production": 10, "staging": 2, "dev": 1}


def _environment() -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("TIME_ZONE", "UTC")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    if "VAULT_KEYS" not in os.environ:
        from cryptography.fernet import Fernet

        os.environ["VAULT_KEYS"] = Fernet.generate_key().decode()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def _setup_django() -> None:
    _environment()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # No collectstatic here: render {% static %} from the source tree.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # fmt: skip
    call_command("migrate", verbosity=0)


# The world: projects, environments, keys, tokens, a member


def make_world():
    from accounts.keys import add_provider_key, rotate_key
    from accounts.models import Project, Role, User
    from accounts.projects import create_project, set_member_role
    from accounts.tokens import create_gateway_token
    from usage.budgets import set_budget

    Project.objects.filter(slug__startswith="bench-").delete()
    User.objects.filter(email__endswith="@bench.example").delete()
    owner = User.objects.create_user("owner@bench.example", "bench-password-1")
    member = User.objects.create_user("member@bench.example", "bench-password-1")
    now = datetime.now(UTC)
    world = []  # (project, env, weight, key before/after rotation, tokens)
    for p_index, (name, slug, weight) in enumerate(PROJECTS):
        project = create_project(name, slug, owner=owner)
        set_member_role(project, member, Role.MEMBER, by=owner)
        set_budget(project, monthly_limit_usd=1000 * weight, by=owner)
        for e_index, (env_name, env_weight) in enumerate(ENVIRONMENTS.items()):
            env = project.environments.get(name=env_name)
            secret = f"sk-proj-bench{p_index}{e_index}" + "a" * 32
            old = add_provider_key(env, secret + "old", name=f"{env_name} key",
                                   issued_at=now - timedelta(days=130), by=owner)  # fmt: skip
            new = rotate_key(old, secret + "new", by=owner)
            tokens = [create_gateway_token(env, f"{env_name}-{t}", by=owner)[0] for t in "ab"]
            world.append(
                (project, env, weight * env_weight, old.pk, new.pk, [t.pk for t in tokens])
            )
    return member, world


# The plan: call buckets, and the rollups computed from them


def _latency_sums(n: int) -> tuple[int, int]:
    """Sum and max of (g·37 mod 500) for g = 1..n: a permutation of 0..499 per 500 calls."""
    full, rest = divmod(n, 500)
    partial = [(g * 37) % 500 for g in range(full * 500 + 1, n + 1)]
    return full * 124_750 + sum(partial), 499 if full else max(partial, default=0)


def _unit_cost(model: str) -> Decimal | None:
    inp, cached, out, _r, prices, _lat, _w = MODELS[model]
    if prices is None:
        return None
    p_in, p_cached, p_out = (Decimal(p) for p in prices)
    return ((inp - cached) * p_in + cached * p_cached + out * p_out) / Decimal(1_000_000)


def plan(world, total: int, end_hour: datetime) -> list[tuple]:
    """Buckets (id, hour, project, env, key, token, model, n) holding `total` calls.

    Weight = project·environment × model × a daily cycle × slow growth; counts by
    largest remainder so they sum to exactly `total`.
    """
    hours = [end_hour - timedelta(hours=h) for h in range(DAYS * 24)]
    rotation = end_hour - timedelta(days=DAYS // 2)
    cells, weights = [], []
    for project, env, pe_weight, old_key, new_key, tokens in world:
        for hour in hours:
            day_cycle = 0.3 + (1.0 if 8 <= hour.hour <= 20 else 0.0)
            growth = 1 + (DAYS * 24 - (end_hour - hour).total_seconds() / 3600) / (DAYS * 24)
            key = new_key if hour >= rotation else old_key
            for t_index, token in enumerate(tokens):
                for model, spec in MODELS.items():
                    cells.append((hour, project.pk, env.pk, key, token, model))
                    weights.append(pe_weight * spec[6] * day_cycle * growth * (2 - t_index))
    scale = total / sum(weights)
    exact = [w * scale for w in weights]
    counts = [int(x) for x in exact]
    short = total - sum(counts)
    for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[:short]:
        counts[i] += 1
    return [(i, *cell, n) for i, (cell, n) in enumerate(zip(cells, counts, strict=True)) if n]


def rollups(buckets: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """HourlyUsage and DailyUsage rows for the buckets, by the per-call rules."""
    hourly, daily = [], {}
    for _i, hour, project, env, key, token, model, n in buckets:
        inp, cached, out, reasoning, _prices, latency_base, _w = MODELS[model]
        errors = n // ERROR_EVERY
        ok = n - errors
        unit = _unit_cost(model)
        cost = (unit.quantize(TEN) * ok) if unit is not None else Decimal(0)
        lat_sum, lat_max = _latency_sums(n)
        row = [
            n,
            errors,
            inp * ok,
            cached * ok,
            out * ok,
            reasoning * ok,
            Decimal(0),
            cost,
            0 if unit is not None else ok,
            latency_base * n + lat_sum,
            latency_base + lat_max,
        ]
        hourly.append((project, env, key, token, model, hour, *row))
        bucket = (project, env, key, token, model, hour.date())
        if bucket in daily:
            acc = daily[bucket]
            for j in range(10):
                acc[j] += row[j]
            acc[10] = max(acc[10], row[10])
        else:
            daily[bucket] = row
    return hourly, [(*k, *v) for k, v in daily.items()]


ROLLUP_COLUMNS = (
    "project_id", "environment_id", "key_id", "token_id", "model", "{bucket}", "calls",
    "errors", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens",
    "audio_seconds", "cost_usd", "unpriced_calls", "latency_ms_sum", "latency_ms_max",
)  # fmt: skip
PLAN_SQL = """CREATE TEMP TABLE bench_plan (id bigint, hour timestamptz, project_id bigint,
  environment_id bigint, key_id bigint, token_id bigint, model text, n integer,
  input bigint, cached bigint, output bigint, reasoning bigint, unit_cost numeric,
  latency_base integer, endpoint text)"""
EXPAND_SQL = f"""
INSERT INTO usage_apicall (request_id, created_at, project_id, environment_id,
  provider_key_id, gateway_token_id, source, endpoint, model, status_code, stream, batch,
  input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, audio_seconds,
  cost_usd, latency_ms, ttfb_ms, error_type)
SELECT 'bench-' || p.id || '-' || g,
  p.hour + make_interval(secs => ((g - 1) * 3600.0 / p.n)::float8),
  p.project_id, p.environment_id, p.key_id, p.token_id, 'gateway', p.endpoint, p.model,
  CASE WHEN g % {ERROR_EVERY} = 0 THEN 429 ELSE 200 END, false, false,
  CASE WHEN g % {ERROR_EVERY} = 0 THEN 0 ELSE p.input END,
  CASE WHEN g % {ERROR_EVERY} = 0 THEN 0 ELSE p.cached END,
  CASE WHEN g % {ERROR_EVERY} = 0 THEN 0 ELSE p.output END,
  CASE WHEN g % {ERROR_EVERY} = 0 THEN 0 ELSE p.reasoning END,
  0,
  CASE WHEN g % {ERROR_EVERY} = 0 THEN 0 ELSE round(p.unit_cost, 10) END,
  p.latency_base + (g * 37) % 500, NULL,
  CASE WHEN g % {ERROR_EVERY} = 0 THEN 'rate_limit_exceeded' ELSE '' END
FROM bench_plan p, generate_series(1, p.n) AS g
"""


def _secondary(cursor, table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, definition) of the table's unique/foreign-key constraints and other indexes."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [table],
    )
    return constraints, cursor.fetchall()


def load(world, total: int) -> float:
    """Replace the bench projects' calls and rollups with `total` calls; seconds taken."""
    from django.db import connection, transaction

    from accounts.models import GatewayToken, ProviderKey

    started = time.monotonic()
    end_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    buckets = plan(world, total, end_hour)
    hourly, daily = rollups(buckets)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE usage_apicall, usage_hourlyusage, usage_dailyusage")
        constraints, indexes = _secondary(cursor, "usage_apicall")
        for name, _definition in constraints:
            cursor.execute(f'ALTER TABLE usage_apicall DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(PLAN_SQL)
        pg = cursor.connection  # psycopg 3: COPY through the Django connection
        with pg.cursor().copy("COPY bench_plan FROM STDIN") as copy:
            for i, hour, project, env, key, token, model, n in buckets:
                inp, cached, out, reasoning, _p, latency_base, _w = MODELS[model]
                endpoint = "/v1/embeddings" if "embedding" in model else "/v1/chat/completions"
                copy.write_row((i, hour, project, env, key, token, model, n, inp, cached, out,
                                reasoning, _unit_cost(model), latency_base, endpoint))  # fmt: skip
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(EXPAND_SQL)
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute("SET LOCAL max_parallel_maintenance_workers = 2")
        for _name, definition in indexes:
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE usage_apicall ADD CONSTRAINT "{name}" {definition}')
        for table, bucket, rows in (("usage_hourlyusage", "hour", hourly),
                                    ("usage_dailyusage", "day", daily)):  # fmt: skip
            columns = ", ".join(ROLLUP_COLUMNS).format(bucket=bucket)
            with pg.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        cursor.execute("DROP TABLE bench_plan")
    # As the flush would have left them: each key's and token's newest call.
    last: dict[tuple[type, int], datetime] = {}
    for _i, hour, _p, _e, key, token, _m, n in buckets:
        newest = hour + timedelta(seconds=(n - 1) * 3600 / n)
        for ident in ((ProviderKey, key), (GatewayToken, token)):
            last[ident] = max(last.get(ident, newest), newest)
    for (model, pk), when in last.items():
        model.objects.filter(pk=pk).update(last_used_at=when)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE usage_apicall")
        cursor.execute("ANALYZE usage_hourlyusage")
        cursor.execute("ANALYZE usage_dailyusage")
    return time.monotonic() - started


def check(total: int) -> None:
    """The rollups say what the call log says: calls, errors, tokens, cost, unpriced."""
    from django.db import connection

    sql = ("SELECT count(*), count(*) FILTER (WHERE status_code >= 400), sum(input_tokens), "
           "sum(output_tokens), sum(cost_usd), count(*) FILTER (WHERE cost_usd IS NULL), "
           "sum(latency_ms), max(latency_ms) FROM usage_apicall")  # fmt: skip
    roll = ("SELECT sum(calls), sum(errors), sum(input_tokens), sum(output_tokens), "
            "sum(cost_usd), sum(unpriced_calls), sum(latency_ms_sum), max(latency_ms_max) "
            "FROM {table}")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql)
        calls = cursor.fetchone()
        for table in ("usage_hourlyusage", "usage_dailyusage"):
            cursor.execute(roll.format(table=table))
            sums = cursor.fetchone()
            if tuple(sums) != tuple(calls) or calls[0] != total:
                sys.exit(f"{table} disagrees with the call log: {sums} vs {calls}")


# Measuring: one uvicorn per level, requests interleaved across levels so that any
# other load on the machine falls on every level alike.

PAGES = {
    "overview": "/overview/",
    "project": f"/projects/{PROJECTS[0][1]}/",
    "explorer": "/explore/",
    "explorer 90 d by model": "/explore/?group_by=model&start={start}",
    "explorer calls (info)": "/explore/calls/",
}


def _level_url(base: str, total: int) -> str:
    label = f"{total // 1_000_000}m" if total >= 1_000_000 else f"{total // 1000}k"
    return f"{base}_{label}"


def _create_database(url: str) -> None:
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            c.execute(f'CREATE DATABASE "{name}"')


def _login(base_url: str):
    import httpx

    client = httpx.Client(base_url=base_url, timeout=60)
    client.get("/accounts/login/")
    r = client.post("/accounts/login/", data={
        "email": "member@bench.example", "password": "bench-password-1",
        "csrfmiddlewaretoken": client.cookies["csrftoken"]})  # fmt: skip
    if r.status_code != 302:
        sys.exit(f"could not log in to {base_url}: {r.status_code}")
    return client


def measure(urls: dict[int, str], rounds: int) -> dict[int, dict[str, tuple[float, float]]]:
    from bench._common import free_port, start, stop, wait_for_port

    env = {"SECURE_COOKIES": "false", "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
                   cwd=ROOT, env={**os.environ, **env, "DATABASE_URL": next(iter(urls.values()))},
                   check=True)  # fmt: skip
    servers, clients = [], {}
    try:
        for total, url in urls.items():
            port = free_port()
            servers.append(start([sys.executable, "-m", "uvicorn", "dashboard.asgi:application",
                                  "--port", str(port), "--no-access-log"],
                                 {**env, "DATABASE_URL": url}))  # fmt: skip
            wait_for_port(port, timeout=60)
            clients[total] = _login(f"http://127.0.0.1:{port}")
        day = (datetime.now(UTC) - timedelta(days=DAYS - 1)).date().isoformat()
        pages = {name: path.format(start=day) for name, path in PAGES.items()}
        times: dict[int, dict[str, list[float]]] = {t: {p: [] for p in pages} for t in urls}
        for round_ in range(rounds + 10):  # the first 10 rounds warm up
            for name, path in pages.items():
                for total, client in clients.items():
                    t0 = time.perf_counter()
                    r = client.get(path)
                    elapsed = (time.perf_counter() - t0) * 1000
                    if r.status_code != 200:
                        sys.exit(f"{path} at {total:,} calls answered {r.status_code}")
                    if round_ >= 10:
                        times[total][name].append(elapsed)
    finally:
        for proc in servers:
            stop(proc)
    out: dict[int, dict[str, tuple[float, float]]] = {}
    for total, per_page in times.items():
        out[total] = {}
        for name, values in per_page.items():
            values.sort()
            p95 = values[max(0, int(len(values) * 0.95 + 0.5) - 1)]
            out[total][name] = (statistics.median(values), p95)
    return out


def load_level(total: int) -> None:
    """In a subprocess, with DATABASE_URL set to the level's database."""
    _setup_django()
    _member, world = make_world()
    seconds = load(world, total)
    check(total)
    print(f"loaded {total:>11,} calls (+ rollups) in {seconds:6.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="10000,1000000,10000000")
    parser.add_argument("--rounds", type=int, default=60, help="timed requests per page/level")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded databases")
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_level(args.load)
        return
    _environment()
    base = os.environ["DATABASE_URL"]
    levels = [int(x) for x in args.levels.split(",")]
    urls = {total: _level_url(base, total) for total in levels}
    for total, url in urls.items():
        if not args.skip_load:
            _create_database(url)
            subprocess.run([sys.executable, __file__, "--load", str(total)], cwd=ROOT,
                           env={**os.environ, "DATABASE_URL": url}, check=True)  # fmt: skip
    results = measure(urls, args.rounds)
    for total in levels:
        print(f"{total:>11,} calls ({urls[total].rsplit('/', 1)[1]}):")
        for page, (p50, p95) in results[total].items():
            print(f"  {page:<24} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    low, high = min(levels), max(levels)
    print(f"\nratio p95 at {high:,} / {low:,} calls (target ≤ {RATIO_TARGET}, p95 < "
          f"{P95_TARGET_MS} ms):")  # fmt: skip
    ok = True
    for page in results[low]:
        ratio = results[high][page][1] / results[low][page][1]
        worst = max(r[page][1] for r in results.values())
        info = "(info)" in page
        passed = info or (ratio <= RATIO_TARGET and worst < P95_TARGET_MS)
        ok = ok and passed
        print(
            f"  {page:<24} {ratio:5.2f}   worst p95 {worst:6.1f} ms   "
            f"{'' if info else ('ok' if passed else 'MISSED')}"
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
