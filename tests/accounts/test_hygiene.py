"""Hygiene flags (unused, shared, invalid, leaked) and the per-key summary."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.hygiene import key_hygiene, token_hygiene
from accounts.keys import add_provider_key, revoke_key, rotate_key
from accounts.models import ProviderKey
from accounts.projects import add_environment
from accounts.tokens import create_gateway_token
from usage.models import ApiCall

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def secret(n: int) -> str:
    return f"sk-proj-{n:04d}" + "A1b2C3d4E5" * 3 + "T3BlbkFJ" + "F6g7H8j9K0" * 3


def call(key: ProviderKey | None, at: datetime, token=None) -> ApiCall:
    environment = key.environment if key else token.environment
    return ApiCall.objects.create(
        request_id=uuid.uuid4().hex, created_at=at, project=environment.project,
        environment=environment, provider_key=key, gateway_token=token,
        endpoint="/v1/chat/completions", model="gpt-4o-mini",
    )  # fmt: skip


@pytest.fixture
def env(alpha):
    return lambda name: alpha.environments.get(name=name)


@pytest.fixture
def old_key(env, alice):
    with time_machine.travel(T0, tick=False):
        return add_provider_key(env("production"), secret(1), by=alice)


def summary(key: ProviderKey, now: datetime) -> dict:
    [row] = key_hygiene(ProviderKey.objects.filter(pk=key.pk), now)
    return row


def test_the_summary_has_age_stage_and_masked_key(old_key):
    row = summary(old_key, T0 + timedelta(days=80))
    assert row["id"] == old_key.pk and row["kind"] == "api"
    assert (row["project"], row["environment"], row["name"]) == (
        "alpha", "production", old_key.name
    )  # fmt: skip
    assert row["masked"] == old_key.masked and secret(1)[8:-4] not in str(row)
    assert (row["age_days"], row["stage"], row["status"]) == (80, "due", "active")
    assert row["issued_at"] == T0 and row["rotation_days"] == 90


def test_a_key_without_calls_for_30_days_is_unused(old_key):
    now = T0 + timedelta(days=40)
    assert summary(old_key, T0 + timedelta(days=29))["flags"] == []  # too young to tell
    assert summary(old_key, now)["flags"] == ["unused"]
    assert summary(old_key, now)["last_used_at"] is None

    call(old_key, now - timedelta(days=31))
    row = summary(old_key, now)
    assert row["flags"] == ["unused"] and row["last_used_at"] == now - timedelta(days=31)

    call(old_key, now - timedelta(days=3))
    row = summary(old_key, now)
    assert row["flags"] == [] and row["last_used_at"] == now - timedelta(days=3)


def test_an_old_key_added_recently_is_not_unused_yet(env, alice):
    # issued long ago, but keymeter has only known it for a day: it cannot have seen calls.
    key = add_provider_key(env("staging"), secret(2), issued_at=timezone.now() - timedelta(
        days=200), by=alice)  # fmt: skip
    row = summary(key, timezone.now() + timedelta(days=1))
    assert row["stage"] == "overdue" and "unused" not in row["flags"]


def test_a_secret_in_two_environments_or_projects_is_shared(env, alice, beta, dave):
    prod = add_provider_key(env("production"), secret(3), by=alice)
    staging = add_provider_key(env("staging"), secret(3), by=alice)
    alone = add_provider_key(env("dev"), secret(4), by=alice)
    now = timezone.now()
    rows = {r["id"]: r["flags"] for r in key_hygiene(ProviderKey.objects.all(), now)}
    assert rows == {prod.pk: ["shared"], staging.pk: ["shared"], alone.pk: []}

    # Across projects too.
    other = add_provider_key(beta.environments.get(name="dev"), secret(4), by=dave)
    rows = {r["id"]: r["flags"] for r in key_hygiene(ProviderKey.objects.all(), now)}
    assert rows[alone.pk] == ["shared"] and rows[other.pk] == ["shared"]

    # A revoked twin does not count.
    revoke_key(staging, by=alice)
    rows = {r["id"]: r["flags"] for r in key_hygiene(ProviderKey.objects.all(), now)}
    assert rows[prod.pk] == [] and rows[staging.pk] == []


def test_a_rotated_key_and_its_successor_are_not_shared(old_key, alice):
    new = rotate_key(old_key, secret(5), by=alice)
    rows = {r["id"]: r for r in key_hygiene(ProviderKey.objects.all(), timezone.now())}
    assert rows[new.pk]["flags"] == [] and rows[old_key.pk]["flags"] == []
    assert rows[old_key.pk]["status"] == "retiring" and rows[old_key.pk]["stage"] is None


def test_invalid_and_leaked_keys_are_flagged(old_key):
    ProviderKey.objects.filter(pk=old_key.pk).update(invalid_at=T0, leaked_at=T0)
    assert summary(old_key, T0 + timedelta(days=1))["flags"] == ["invalid", "leaked"]


def test_tokens_have_stage_and_unused_flag(env, alice):
    with time_machine.travel(T0, tick=False):
        token, _ = create_gateway_token(env("production"), "ci", by=alice)
    now = T0 + timedelta(days=90)
    [row] = token_hygiene([token], now)
    assert (row["kind"], row["stage"], row["flags"], row["age_days"]) == (
        "token", "overdue", ["unused"], 90
    )  # fmt: skip
    assert row["masked"] == f"{token.prefix}…"
    call(None, now - timedelta(days=1), token=token)
    [row] = token_hygiene([token], now)
    assert row["flags"] == [] and row["last_used_at"] == now - timedelta(days=1)


def test_the_summary_takes_a_fixed_number_of_queries(
    alpha, beta, alice, dave, django_assert_max_num_queries
):
    for i in range(12):
        project = alpha if i % 2 else beta
        environment = add_environment(project, f"env{i}", by=alice if i % 2 else dave)
        key = add_provider_key(environment, secret(100 + i % 5), by=alice)
        call(key, timezone.now() - timedelta(days=i))
        create_gateway_token(environment, f"t{i}", by=alice)
    with django_assert_max_num_queries(3):
        rows = key_hygiene(ProviderKey.objects.all())
    assert len(rows) == 12 and all("shared" in r["flags"] for r in rows)
    from accounts.models import GatewayToken

    with django_assert_max_num_queries(2):
        assert len(token_hygiene(GatewayToken.objects.all())) == 12
