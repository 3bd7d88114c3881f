"""Gateway overhead: the same chat call direct to a fast fake upstream and through
keymeter's gateway (logging on: every call is pushed to the Redis stream).

    .venv/bin/python bench/gateway.py [--seconds 10]

Uses DATABASE_URL / REDIS_URL when set (default: the local Postgres database
`keymeter_bench` and Redis db 9). One uvicorn process each; wrk as the load.
Targets for one gateway process: added p50 ≤ 0.5 ms at 1 connection; ≥ 5,000 req/s
and p99 ≤ 10 ms at 32 connections.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import (  # noqa: E402
    PYTHON,
    cpu_seconds,
    free_port,
    start,
    stop,
    wait_for_port,
    wrk,
)

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/keymeter_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("SECRET_KEY", "bench-secret-key")
os.environ.setdefault("VAULT_KEYS", "5V8sB1yWqfT3xXo9Gm8o0a7gRrV2g9LrqJ2m7Yy6bZc=")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})


def prepare(upstream_url: str) -> str:
    """A database with one project, key and token; returns the km_ token."""
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.keys import add_provider_key
    from accounts.models import Project, User
    from accounts.projects import create_project
    from accounts.tokens import create_gateway_token
    from dashboard.redis_client import get_redis

    Project.objects.filter(slug="bench").delete()
    user, _ = User.objects.get_or_create(email="bench@example.org")
    project = create_project("Bench", "bench", owner=user)
    environment = project.environments.get(name="production")
    add_provider_key(environment, "sk-bench-" + "x" * 40, base_url=f"{upstream_url}/v1")
    get_redis().delete("km:calls")
    return create_gateway_token(environment, "bench")[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--upstream-port", type=int, default=0,
                        help="serve the fake upstream here (a peer proxy may point at it)")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=URL",
                        help="also measure another proxy of the same upstream, same run")
    args = parser.parse_args()

    up_port, km_port = args.upstream_port or free_port(), free_port()
    upstream = start([PYTHON, "-m", "uvicorn", "tests.support.fake_upstream:fast_app",
                      "--factory", "--port", str(up_port), "--no-access-log",
                      "--log-level", "warning"])
    gateway = None
    try:
        wait_for_port(up_port)
        token = prepare(f"http://127.0.0.1:{up_port}")
        gateway = start([PYTHON, "-m", "uvicorn", "dashboard.asgi:application", "--port",
                         str(km_port), "--no-access-log", "--log-level", "warning"])
        wait_for_port(km_port)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        direct_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        km_url = f"http://127.0.0.1:{km_port}/v1/chat/completions"
        wrk(km_url, 4, 2, BODY, headers)  # warm the route cache and connection pool
        from dashboard.redis_client import get_redis

        logged_before = get_redis().xlen("km:calls")
        print(f"{'connections':>11} {'direct req/s':>13} {'gateway req/s':>14} "
              f"{'ratio':>6} {'direct p50':>10} {'added p50':>9} {'added p99':>9} "
              f"{'gw p99':>7}")
        total = 0
        cpu = []
        for connections in (1, 32):
            up_before = cpu_seconds(upstream.pid)
            direct = wrk(direct_url, connections, args.seconds, BODY, headers)
            up_cpu = (cpu_seconds(upstream.pid) - up_before) / (direct["rps"] * args.seconds)
            gw_before, up_before = cpu_seconds(gateway.pid), cpu_seconds(upstream.pid)
            through = wrk(km_url, connections, args.seconds, BODY, headers)
            calls = through["rps"] * args.seconds
            gw_cpu = (cpu_seconds(gateway.pid) - gw_before) / calls
            cpu.append((connections, up_cpu, gw_cpu))
            total += calls
            print(f"{connections:>11} {direct['rps']:>13,.0f} {through['rps']:>14,.0f} "
                  f"{through['rps'] / direct['rps']:>6.2f} {direct['p50']:>9.2f}ms "
                  f"{through['p50'] - direct['p50']:>7.2f}ms "
                  f"{through['p99'] - direct['p99']:>7.2f}ms {through['p99']:>5.2f}ms"
                  + (f"  errors: {through['errors']:.0f}" if through["errors"] else ""))
        for name, url in (peer.split("=", 1) for peer in args.peer):
            wrk(url, 4, 2, BODY, headers)  # warm-up
            print(f"peer {name} ({url}):")
            for connections in (1, 32):
                direct = wrk(direct_url, connections, args.seconds, BODY, headers)
                other = wrk(url, connections, args.seconds, BODY, headers)
                ours = wrk(km_url, connections, args.seconds, BODY, headers)
                print(f"  {connections:>2} connections: {name} {other['rps']:,.0f} req/s, "
                      f"added p50 {other['p50'] - direct['p50']:.2f} ms | keymeter "
                      f"{ours['rps']:,.0f} req/s, added p50 {ours['p50'] - direct['p50']:.2f} "
                      f"ms | keymeter / {name}: {ours['rps'] / other['rps']:.1f}× throughput"
                      + (f"  ({other['errors']:.0f} {name} errors)" if other["errors"] else ""))
        print("CPU per call (contention-free measure of the work done):")
        for connections, up_cpu, gw_cpu in cpu:
            print(f"  {connections:>2} connections: fake upstream {up_cpu * 1e6:6.0f} µs, "
                  f"gateway {gw_cpu * 1e6:6.0f} µs ({gw_cpu / up_cpu:.1f}× the upstream's); "
                  f"one gateway core ≈ {1 / gw_cpu:,.0f} calls/s")
        logged = get_redis().xlen("km:calls") - logged_before
        print(f"call records pushed to the stream during the runs: {logged:,} "
              f"(≈ {total:,.0f} requests answered)")
    finally:
        if gateway:
            stop(gateway)
        stop(upstream)


if __name__ == "__main__":
    main()
