"""The usage explorer: filters, grouping, CSV of exactly the table, and the call view."""

from __future__ import annotations

import csv
import html as html_lib
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.keys import add_provider_key
from accounts.tokens import create_gateway_token
from dashboard.templatetags.money import format_usd
from tests.dashboard.usage_rows import add_usage
from usage.models import ApiCall

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def get(client, user, url):
    client.force_login(user)
    return client.get(url)


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The visible cells of a table, tags stripped; a <time> cell gives its datetime."""
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = []
        for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S):
            stamp = re.search(r'<time datetime="([^"]+)"', cell)
            text = stamp.group(1) if stamp else re.sub(r"<[^>]+>", " ", cell)
            cells.append(" ".join(html_lib.unescape(text).split()))
        rows.append(cells)
    return rows


@pytest.fixture
def usage(alpha, beta):
    add_usage(alpha, TODAY, model="gpt-4o-mini", cost="0.195", calls=1000, input_tokens=100_000,
              output_tokens=300_000)  # fmt: skip
    add_usage(alpha, TODAY - timedelta(days=1), model="gpt-4o", cost="2.5", calls=40,
              environment="staging", errors=3)  # fmt: skip
    add_usage(alpha, TODAY - timedelta(days=1), model="my-finetune", cost="0", calls=9,
              unpriced_calls=9)  # fmt: skip
    add_usage(alpha, TODAY - timedelta(days=40), model="gpt-4o", cost="100")  # out of range
    add_usage(beta, TODAY, model="gpt-4.1", cost="7.00")


@pytest.mark.parametrize("who", ["alice", "bob", "charlie"])
def test_every_role_explores_its_projects(client, usage, who, request):
    r = get(client, request.getfixturevalue(who), "/explore/?group_by=model")
    assert r.status_code == 200
    rows = table_rows(r.content.decode(), "explorer-table")
    assert [row[0] for row in rows] == ["gpt-4o", "gpt-4o-mini", "my-finetune"]


def test_a_non_member_sees_nothing_of_other_projects(client, usage, dave):
    r = get(client, dave, "/explore/?group_by=model")
    rows = table_rows(r.content.decode(), "explorer-table")
    assert [row[0] for row in rows] == ["gpt-4.1"]
    r = get(client, dave, "/explore/?project=alpha")
    assert r.status_code == 400
    assert "gpt-4o" not in r.content.decode()
    assert get(client, dave, "/explore/?project=alpha&format=csv").status_code == 400


def test_a_user_without_projects_gets_an_empty_state(client, db):
    from tests.conftest import make_user

    r = get(client, make_user("erin@example.org"), "/explore/")
    assert r.status_code == 200 and "Nothing to explore yet" in r.content.decode()


def test_it_groups_by_day_environment_and_key(client, alpha, alice, bob):
    key = add_provider_key(alpha.environments.get(name="production"), "sk-proj-" + "k" * 40,
                           name="main", by=alice)  # fmt: skip
    add_usage(alpha, TODAY, cost="1.25", key_id=key.pk)
    add_usage(alpha, TODAY - timedelta(days=2), cost="0.75", environment="dev")
    html = get(client, bob, "/explore/").content.decode()
    assert [r[0] for r in table_rows(html, "explorer-table")] == [
        (TODAY - timedelta(days=2)).isoformat(), TODAY.isoformat()
    ]  # fmt: skip
    html = get(client, bob, "/explore/?group_by=environment").content.decode()
    assert [r[0] for r in table_rows(html, "explorer-table")] == [
        "alpha / production", "alpha / dev"
    ]  # fmt: skip
    html = get(client, bob, "/explore/?group_by=key").content.decode()
    labels = [r[0] for r in table_rows(html, "explorer-table")]
    assert labels == [f"main ({key.masked})", "no key (ingest API)"]
    assert "k" * 40 not in html


def test_filters_narrow_the_rows(client, usage, bob):
    html = get(client, bob, "/explore/?group_by=model&environment=staging").content.decode()
    assert [r[0] for r in table_rows(html, "explorer-table")] == ["gpt-4o"]
    html = get(client, bob, "/explore/?group_by=model&model=my-finetune").content.decode()
    assert [r[0] for r in table_rows(html, "explorer-table")] == ["my-finetune"]
    start = (TODAY - timedelta(days=45)).isoformat()
    html = get(client, bob, f"/explore/?group_by=model&start={start}").content.decode()
    gpt4o = next(r for r in table_rows(html, "explorer-table") if r[0] == "gpt-4o")
    assert gpt4o[7] == "$102.50"


def test_token_filter(client, alpha, alice, bob):
    token, _ = create_gateway_token(alpha.environments.get(name="production"), "ci", by=alice)
    add_usage(alpha, TODAY, cost="1.00", token_id=token.pk, model="a")
    add_usage(alpha, TODAY, cost="2.00", model="b")
    html = get(client, bob, f"/explore/?group_by=model&token={token.pk}").content.decode()
    assert [r[0] for r in table_rows(html, "explorer-table")] == ["a"]


def test_the_chart_data_sums_the_rollups_exactly(client, alpha, bob):
    add_usage(alpha, TODAY, cost="0.0000000001")
    add_usage(alpha, TODAY, cost="0.1949999999", environment="dev")
    html = get(client, bob, "/explore/").content.decode()
    data = re.search(r'id="explorer-chart-data" type="application/json">(.*?)</script>', html)
    import json

    chart = json.loads(data.group(1))
    assert len(chart["labels"]) == 30
    assert Decimal(chart["datasets"][0]["data"][-1]) == Decimal("0.195")
    assert all(Decimal(v) == 0 for v in chart["datasets"][0]["data"][:-1])


def test_the_csv_holds_exactly_the_rows_shown(client, usage, bob):
    for group in ("day", "model", "environment", "key"):
        url = f"/explore/?group_by={group}"
        shown = table_rows(get(client, bob, url).content.decode(), "explorer-table")
        r = get(client, bob, url + "&format=csv")
        assert r["Content-Type"].startswith("text/csv")
        assert "attachment" in r["Content-Disposition"]
        header, *rows = list(csv.reader(io.StringIO(r.content.decode())))
        assert header[0] == group and header[-2:] == ["cost_usd", "unpriced_calls"]
        assert len(rows) == len(shown)
        for csv_row, cells in zip(rows, shown, strict=True):
            assert csv_row[0] == cells[0]
            assert [int(v) for v in csv_row[1:7]] == [int(c.replace(",", "")) for c in cells[1:7]]
            cost = cells[7]
            if cost == "unpriced":
                assert csv_row[7] == "unpriced"
            else:
                # The CSV is exact; the page rounds it the way money is shown.
                assert format_usd(Decimal(csv_row[7])) == cost.split(" +")[0]
            assert int(csv_row[8]) == int(cells[8])


def test_unpriced_rows_say_unpriced(client, usage, bob):
    html = get(client, bob, "/explore/?group_by=model").content.decode()
    row = next(r for r in table_rows(html, "explorer-table") if r[0] == "my-finetune")
    assert row[7] == "unpriced" and row[8] == "9"


@pytest.mark.parametrize(
    "query",
    ["start=2026-03-10&end=2026-03-01", "start=2024-01-01", "group_by=weekday",
     "start=yesterday", "key=999999", "token=abc", "cursor=12-x", "environment=prod'--"],
)  # fmt: skip
def test_bad_input_is_a_400_with_a_message(client, usage, bob, query):
    r = get(client, bob, f"/explore/?{query}")
    assert r.status_code == 400
    html = r.content.decode()
    assert "field-errors" in html or "alert--error" in html  # hidden fields: a form error
    assert get(client, bob, f"/explore/calls/?{query}").status_code == 400


# The call view: keyset paging over ApiCall


def make_calls(project, n: int, start: datetime) -> list[ApiCall]:
    env = project.environments.get(name="production")
    calls = [
        ApiCall(
            request_id=f"req-{project.slug}-{i}",
            # Pairs of calls share a timestamp: the id breaks the tie.
            created_at=start - timedelta(seconds=i // 2),
            project=project, environment=env, endpoint="/v1/chat/completions",
            model="gpt-4o-mini" if i % 5 else "mystery-model",
            status_code=500 if i % 7 == 0 else 200,
            cost_usd=None if i % 5 == 0 else Decimal("0.000195"),
            input_tokens=100, output_tokens=300,
        )
        for i in range(n)
    ]  # fmt: skip
    return ApiCall.objects.bulk_create(calls)


def _page_through(client, url: str) -> list[str]:
    seen = []
    while url:
        html = client.get(url).content.decode()
        seen += re.findall(r'<code class="mono small">([^<]+)</code>', html)
        nxt = re.search(r'rel="next" href="([^"]+)"', html)
        url = "/explore/calls/" + html_lib.unescape(nxt.group(1)) if nxt else None
    return seen


def test_keyset_paging_returns_every_call_exactly_once(client, alpha, beta, bob):
    made = make_calls(alpha, 137, NOW - timedelta(minutes=5))
    make_calls(beta, 20, NOW - timedelta(minutes=5))
    client.force_login(bob)
    seen = _page_through(client, "/explore/calls/")
    assert len(seen) == 137 == len(set(seen))
    assert set(seen) == {c.request_id for c in made}
    # Newest first, ties by id descending.
    order = sorted(made, key=lambda c: (c.created_at, c.pk), reverse=True)
    assert seen == [c.request_id for c in order]


def test_the_call_view_filters_errors_and_models(client, alpha, bob):
    made = make_calls(alpha, 60, NOW - timedelta(minutes=5))
    client.force_login(bob)
    seen = _page_through(client, "/explore/calls/?errors_only=on")
    assert sorted(seen) == sorted(c.request_id for c in made if c.status_code >= 400)
    seen = _page_through(client, "/explore/calls/?model=mystery-model")
    assert len(seen) == 12


def test_the_call_view_shows_unpriced_calls_as_unpriced(client, alpha, bob):
    make_calls(alpha, 5, NOW - timedelta(minutes=1))
    html = get(client, bob, "/explore/calls/").content.decode()
    rows = table_rows(html, "calls-table")
    costs = {row[-1]: row[7] for row in rows}
    assert costs[f"req-{alpha.slug}-0"] == "unpriced"
    assert costs[f"req-{alpha.slug}-1"] == "$0.0002"


def test_a_non_member_sees_no_calls(client, alpha, dave):
    make_calls(alpha, 5, NOW - timedelta(minutes=1))
    html = get(client, dave, "/explore/calls/").content.decode()
    assert "req-alpha" not in html
