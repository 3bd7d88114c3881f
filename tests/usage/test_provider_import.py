from __future__ import annotations

import logging
import secrets
import socket
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.keys import add_provider_key, revoke_key
from accounts.models import ProviderKey
from tests.usage.fake_org_api import FakeOrgApi, cost_result, usage_result
from usage.models import DailyUsage, ProviderDailyUsage
from usage.provider_import import import_provider_usage, provider_daily_costs

DAY1 = date(2025, 3, 1)
DAY2 = date(2025, 3, 2)


def admin_secret() -> str:
    return "sk-admin-" + secrets.token_urlsafe(30) + "T3BlbkFJ" + secrets.token_urlsafe(30)


def add_admin_key(project, url: str, secret: str | None = None, name: str = "org-admin"):
    environment = project.environments.get(name="production")
    return add_provider_key(
        environment, secret or admin_secret(), name=name, base_url=url, kind=ProviderKey.Kind.ADMIN
    )


def org_data() -> tuple[dict, dict]:
    usage = {
        DAY1: [
            usage_result(
                "proj_alpha",
                "gpt-4o-mini",
                requests=5,
                input_tokens=1000,
                output_tokens=500,
                cached=800,
            ),
            usage_result("proj_other", "gpt-4o", requests=2, input_tokens=10, output_tokens=20),
        ],
        DAY2: [
            usage_result(
                "proj_alpha", "gpt-4o-mini", requests=7, input_tokens=700, output_tokens=2100
            )
        ],
    }
    costs = {
        DAY1: [
            cost_result("proj_alpha", "gpt-4o-mini, input", "0.06"),
            cost_result("proj_alpha", "gpt-4o-mini, output", "0.000375"),
            cost_result("proj_other", "gpt-4o, input", "0.1"),
        ],
        DAY2: [cost_result("proj_alpha", "gpt-4o-mini, input", "0.2")],
    }
    return usage, costs


@pytest.fixture
def fake():
    usage, costs = org_data()
    with FakeOrgApi(admin_key=admin_secret(), usage=usage, costs=costs) as server:
        yield server


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.PROVIDER_IMPORT_BACKOFF = 0.01


@pytest.fixture
def linked_alpha(alpha):
    alpha.provider_project_id = "proj_alpha"
    alpha.save()
    return alpha


def test_it_imports_usage_and_costs_with_exact_decimals(linked_alpha, fake):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)

    counts = import_provider_usage(DAY1, DAY2)

    assert counts == {
        "keys": 1,
        "imported": 1,
        "rejected": 0,
        "failed": 0,
        "usage_rows": 3,
        "cost_rows": 4,
    }
    usage = ProviderDailyUsage.objects.get(
        provider_project_id="proj_alpha", day=DAY1, model="gpt-4o-mini"
    )
    assert (usage.requests, usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (
        5,
        1000,
        800,
        500,
    )
    assert usage.cost_usd is None
    cost = ProviderDailyUsage.objects.get(
        provider_project_id="proj_alpha", day=DAY1, line_item="gpt-4o-mini, input"
    )
    assert cost.cost_usd == Decimal("0.06")
    assert provider_daily_costs(linked_alpha, DAY1, DAY2) == {
        DAY1: Decimal("0.060375"),
        DAY2: Decimal("0.2"),
    }


def test_it_asks_with_the_admin_key_in_utc_day_buckets(linked_alpha, fake):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)

    import_provider_usage(DAY1, DAY2)

    assert {r.authorization for r in fake.requests} == {f"Bearer {fake.admin_key}"}
    first = fake.requests[0]
    assert first.query["start_time"] == [str(int(datetime(2025, 3, 1, tzinfo=UTC).timestamp()))]
    assert first.query["end_time"] == [str(int(datetime(2025, 3, 3, tzinfo=UTC).timestamp()))]
    assert first.query["bucket_width"] == ["1d"]


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite keeps 15 significant digits")
def test_it_keeps_every_digit_of_a_large_amount(linked_alpha, fake):
    fake.costs = {DAY1: [cost_result("proj_alpha", "fine-tuning", "123456789.0123456789")]}
    add_admin_key(linked_alpha, fake.url, fake.admin_key)

    import_provider_usage(DAY1, DAY1)

    # Through a float this would be 123456789.01234567…
    assert provider_daily_costs(linked_alpha, DAY1, DAY1) == {DAY1: Decimal("123456789.0123456789")}


def test_it_follows_pagination(linked_alpha, fake):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)

    import_provider_usage(DAY1, DAY2)

    usage_calls = [r for r in fake.requests if r.path.endswith("/usage/completions")]
    cost_calls = [r for r in fake.requests if r.path.endswith("/costs")]
    assert len(usage_calls) == 2 and len(cost_calls) == 2
    assert "page" not in usage_calls[0].query
    assert usage_calls[1].query["page"] == ["page_1"]
    assert cost_calls[1].query["page"] == ["page_1"]
    # The second page's day arrived.
    assert ProviderDailyUsage.objects.filter(day=DAY2).count() == 2


def test_reimport_replaces_the_days_numbers(linked_alpha, fake):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)
    import_provider_usage(DAY1, DAY2)
    import_provider_usage(DAY1, DAY2)

    assert ProviderDailyUsage.objects.count() == 7
    assert provider_daily_costs(linked_alpha, DAY1, DAY2)[DAY1] == Decimal("0.060375")

    # The provider revises a day: the new figure replaces the old one.
    fake.costs[DAY1][0] = cost_result("proj_alpha", "gpt-4o-mini, input", "0.07")
    import_provider_usage(DAY1, DAY1)

    assert provider_daily_costs(linked_alpha, DAY1, DAY2) == {
        DAY1: Decimal("0.070375"),
        DAY2: Decimal("0.2"),
    }
    assert ProviderDailyUsage.objects.count() == 7


def test_it_skips_a_rejected_key_without_leaking_it(linked_alpha, beta, fake, caplog):
    good = add_admin_key(linked_alpha, fake.url, fake.admin_key)
    wrong_secret = admin_secret()
    wrong = add_admin_key(beta, fake.url, wrong_secret, name="old-admin")
    caplog.set_level(logging.DEBUG)

    counts = import_provider_usage(DAY1, DAY2)

    assert (counts["rejected"], counts["imported"]) == (1, 1)
    assert ProviderDailyUsage.objects.filter(provider_project_id="proj_alpha").count() == 5
    messages = [r.getMessage() for r in caplog.records]
    assert any(wrong.masked in m and "rejected" in m for m in messages)
    formatted = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    for secret in (wrong_secret, fake.admin_key):
        assert secret not in formatted
        assert secret[12:40] not in formatted
    assert good.masked not in " ".join(m for m in messages if "rejected" in m)


def test_it_retries_server_errors(linked_alpha, fake):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)
    fake.fail_next = [503, 502]

    counts = import_provider_usage(DAY1, DAY2)

    assert (counts["imported"], counts["failed"]) == (1, 0)
    assert provider_daily_costs(linked_alpha, DAY1, DAY2)[DAY2] == Decimal("0.2")


def test_it_counts_a_key_as_failed_when_the_provider_stays_down(linked_alpha, fake, caplog):
    key = add_admin_key(linked_alpha, fake.url, fake.admin_key)
    fake.fail_next = [500] * 10
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable_secret = admin_secret()
    add_admin_key(
        linked_alpha, f"http://127.0.0.1:{closed_port}/v1", unreachable_secret, name="unreachable"
    )

    counts = import_provider_usage(DAY1, DAY2)

    assert (counts["keys"], counts["failed"], counts["imported"]) == (2, 2, 0)
    assert len(fake.requests) == 3  # bounded: three attempts, then give up
    assert not ProviderDailyUsage.objects.exists()
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert any(key.masked in m and "HTTP 500" in m for m in failures)
    assert all(unreachable_secret not in m for m in failures)


def test_it_maps_provider_projects_to_projects(linked_alpha, beta, fake):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)

    import_provider_usage(DAY1, DAY2)

    alpha_rows = ProviderDailyUsage.objects.filter(provider_project_id="proj_alpha")
    assert {r.project_id for r in alpha_rows} == {linked_alpha.pk}
    other = ProviderDailyUsage.objects.filter(provider_project_id="proj_other")
    assert {r.project_id for r in other} == {None}
    assert provider_daily_costs(beta, DAY1, DAY2) == {}

    # Linking beta afterwards maps the next import.
    beta.provider_project_id = "proj_other"
    beta.save()
    import_provider_usage(DAY1, DAY1)
    assert {r.project_id for r in other.all()} == {beta.pk}
    assert provider_daily_costs(beta, DAY1, DAY2) == {DAY1: Decimal("0.1")}


def test_it_ignores_revoked_and_ordinary_keys(linked_alpha, fake):
    revoked = add_admin_key(linked_alpha, fake.url, fake.admin_key)
    revoke_key(revoked)
    staging = linked_alpha.environments.get(name="staging")
    add_provider_key(staging, fake.admin_key, base_url=fake.url)  # an API key, not admin

    counts = import_provider_usage(DAY1, DAY2)

    assert counts["keys"] == 0
    assert fake.requests == []


def test_it_refuses_a_backwards_range(db):
    with pytest.raises(ValueError):
        import_provider_usage(DAY2, DAY1)


def test_command_prints_what_it_imported(linked_alpha, fake):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)
    out = StringIO()

    call_command(
        "import_provider_usage", "--start", "2025-03-01", "--end", "2025-03-02", stdout=out
    )

    text = out.getvalue()
    assert "1 of 1 admin keys imported" in text
    assert "2025-03-01  proj_alpha → alpha: 5 requests" in text
    assert "cost $0.060375" in text
    assert "proj_other → (no keymeter project)" in text
    assert fake.admin_key not in text


def test_command_says_when_there_is_no_admin_key(db):
    out = StringIO()
    call_command("import_provider_usage", "--days", "3", stdout=out)
    assert "No active admin keys" in out.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ["--days", "0"],
        ["--days", "2", "--start", "2025-03-01"],
        ["--start", "2025-03-02", "--end", "2025-03-01"],
        ["--end", "2025-03-01"],
        ["--start", "2023-01-01", "--end", "2025-03-01"],
    ],
)
def test_command_rejects_bad_ranges(db, args):
    with pytest.raises(CommandError):
        call_command("import_provider_usage", *args, stdout=StringIO())


def test_command_rejects_a_malformed_date(db):
    with pytest.raises(CommandError, match="not a date"):
        call_command("import_provider_usage", "--start", "March 1", stdout=StringIO())


def test_command_exits_nonzero_when_a_key_is_rejected(linked_alpha, fake):
    add_admin_key(linked_alpha, fake.url, admin_secret())
    err = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_provider_usage", "--days", "1", stdout=StringIO(), stderr=err)
    assert exit_info.value.code == 1
    assert "1 admin keys were rejected" in err.getvalue()


def test_default_range_is_yesterday_and_today(linked_alpha, fake):
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    fake.costs = {
        yesterday: [cost_result("proj_alpha", "x", "1.5")],
        today: [cost_result("proj_alpha", "x", "0.5")],
        today - timedelta(days=2): [cost_result("proj_alpha", "x", "9")],
    }
    add_admin_key(linked_alpha, fake.url, fake.admin_key)

    call_command("import_provider_usage", stdout=StringIO())

    assert provider_daily_costs(linked_alpha, today - timedelta(days=5), today) == {
        yesterday: Decimal("1.5"),
        today: Decimal("0.5"),
    }


def test_the_daily_task_imports_yesterday_and_today(linked_alpha, fake, settings):
    from dashboard.celery import app
    from usage.tasks import import_provider_usage as task

    today = datetime.now(UTC).date()
    fake.costs = {today: [cost_result("proj_alpha", "x", "0.25")]}
    add_admin_key(linked_alpha, fake.url, fake.admin_key)

    counts = task()

    assert counts["imported"] == 1
    assert provider_daily_costs(linked_alpha, today, today) == {today: Decimal("0.25")}
    entry = settings.CELERY_BEAT_SCHEDULE["import-provider-usage"]
    assert entry["task"] == task.name and task.name in app.tasks


def add_gateway_day(project, day: date, cost: str, calls: int = 3) -> None:
    DailyUsage.objects.create(
        project=project,
        environment=project.environments.get(name="production"),
        day=day,
        model="gpt-4o-mini",
        calls=calls,
        cost_usd=Decimal(cost),
    )


def test_spend_api_shows_provider_cost_beside_gateway_spend(linked_alpha, alice, fake, api_as):
    add_admin_key(linked_alpha, fake.url, fake.admin_key)
    import_provider_usage(DAY1, DAY2)
    add_gateway_day(linked_alpha, DAY1, "0.05")
    add_gateway_day(linked_alpha, date(2025, 3, 3), "0.01")

    response = api_as(alice).get(
        "/api/v1/projects/alpha/spend",
        {"start": "2025-03-01", "end": "2025-03-03", "group_by": "day", "include_provider": "true"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    rows = {row["day"]: row for row in body["rows"]}
    assert (rows["2025-03-01"]["cost_usd"], rows["2025-03-01"]["provider_cost_usd"]) == (
        "0.05",
        "0.060375",
    )
    # Billed by the provider but never seen by the gateway: still a row.
    assert (rows["2025-03-02"]["calls"], rows["2025-03-02"]["provider_cost_usd"]) == (0, "0.20")
    assert rows["2025-03-03"]["provider_cost_usd"] is None
    assert [row["day"] for row in body["rows"]] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert body["totals"]["provider_cost_usd"] == "0.260375"


def test_spend_api_leaves_provider_cost_out_unless_asked(linked_alpha, alice, api_as):
    add_gateway_day(linked_alpha, DAY1, "0.05")
    response = api_as(alice).get(
        "/api/v1/projects/alpha/spend", {"start": "2025-03-01", "end": "2025-03-01"}
    )
    assert response.status_code == 200
    assert "provider_cost_usd" not in response.json()["rows"][0]


def test_spend_api_wants_group_by_day_for_provider_cost(linked_alpha, alice, dave, api_as):
    path = "/api/v1/projects/alpha/spend"
    query = {"group_by": "model", "include_provider": "true"}
    response = api_as(alice).get(path, query)
    assert response.status_code == 400
    assert "group_by=day" in response.json()["detail"]
    assert api_as(dave).get(path, {"include_provider": "true"}).status_code == 404
