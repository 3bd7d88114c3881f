"""Rotating a provider key while calls run through the real gateway: no call fails and
the upstream gets the new key once the route cache expires.

It lives beside the gateway tests so it shares their one keymeter server (the gateway's
aiohttp session belongs to that server's event loop). Rotation rules are tested in
tests/accounts/test_rotation.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import openai
from django.utils import timezone

from accounts.keys import rotate_key
from accounts.models import ProviderKey
from accounts.rotation import end_grace_periods
from tests.usage.conftest import PROVIDER_SECRET

NEW_SECRET = "sk-proj-" + "Zz9Yy8Xx7w" * 4 + "T3BlbkFJ" + "Vv6Uu5Tt4s" * 4

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def test_rotating_while_calls_run_fails_no_call(gateway_setup, alice):
    from usage.gateway import gateway

    default_ttl = gateway.routes.ttl
    gateway.routes.ttl = 0.3
    client = openai.OpenAI(
        base_url=f"{gateway_setup['url']}/v1", api_key=gateway_setup["token"], max_retries=0
    )
    fake = gateway_setup["upstream"]
    stop = threading.Event()
    results: list[str] = []

    def call_loop():
        while not stop.is_set():
            try:
                client.chat.completions.create(**CHAT)
                results.append("ok")
            except Exception as exc:  # counted as a failed call
                results.append(f"failed: {type(exc).__name__}")

    try:
        worker = threading.Thread(target=call_loop)
        worker.start()
        time.sleep(0.3)
        rotate_key(gateway_setup["key"], NEW_SECRET, by=alice)
        rotated_at = len(fake.received)
        time.sleep(1.0)  # > the route cache TTL
        # The grace period ends (as the hourly beat would, a day later): calls go on.
        assert end_grace_periods(timezone.now() + timedelta(hours=25)) == 1
        time.sleep(0.5)
        stop.set()
        worker.join(timeout=10)
    finally:
        gateway.routes.ttl = default_ttl

    assert len(results) > 20 and set(results) == {"ok"}
    sent_keys = [r.headers["authorization"] for r in fake.received]
    assert sent_keys[0] == f"Bearer {PROVIDER_SECRET}"
    assert sent_keys[-1] == f"Bearer {NEW_SECRET}"
    # Once switched, it stays switched.
    first_new = sent_keys.index(f"Bearer {NEW_SECRET}")
    assert first_new >= rotated_at - 1
    assert set(sent_keys[first_new:]) == {f"Bearer {NEW_SECRET}"}
    gateway_setup["key"].refresh_from_db()
    assert gateway_setup["key"].status == ProviderKey.Status.REVOKED
