"""The budget page: admins set and remove budgets, everyone else reads them; and the
alerts history with delivery status."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from usage import budgets
from usage.models import Budget, BudgetAlert, DailyUsage, HealthAlert


@pytest.fixture
def as_user(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def _spend(project, amount: str) -> None:
    environment = project.environments.get(name="production")
    DailyUsage.objects.create(
        project=project,
        environment=environment,
        model="gpt-4o-mini",
        day=budgets.local_now().date(),
        calls=10,
        cost_usd=Decimal(amount),
    )


VALID = {
    "environment": "",
    "monthly_limit_usd": "100.00",
    "thresholds": "50, 80, 100",
    "recipients": "finance@example.org\nops@example.org",
    "notify_admins": "on",
    "hard_limit": "on",
}


def test_an_admin_sets_a_budget(as_user, alpha, alice):
    r = as_user(alice).post("/projects/alpha/budget/", VALID)
    assert r.status_code == 302
    budget = Budget.objects.get(project=alpha, environment=None)
    assert budget.monthly_limit_usd == Decimal("100.00")
    assert budget.thresholds == [50, 80, 100]
    assert budget.extra_recipients == ["finance@example.org", "ops@example.org"]
    assert budget.hard_limit is True
    event = AuditEvent.objects.get(action="budget.set")
    assert event.actor == alice and event.project == alpha
    html = as_user(alice).get(r.url).content.decode()
    assert "$100.00" in html
    assert "finance@example.org" in html


def test_an_admin_sets_an_environment_budget_and_edits_it(as_user, alpha, alice):
    client = as_user(alice)
    data = VALID | {"environment": "staging", "hard_limit": ""}
    assert client.post("/projects/alpha/budget/", data).status_code == 302
    budget = Budget.objects.get(project=alpha, environment__name="staging")
    html = client.get("/projects/alpha/budget/?environment=staging").content.decode()
    assert 'value="100.00"' in html
    assert (
        client.post("/projects/alpha/budget/", data | {"monthly_limit_usd": "250"}).status_code
        == 302
    )
    budget.refresh_from_db()
    assert budget.monthly_limit_usd == Decimal("250.00")


def test_editing_keeps_the_webhook_set_through_the_api(as_user, alpha, alice):
    budgets.set_budget(
        alpha, monthly_limit_usd="10", webhook_url="https://hooks.example.org/x", by=alice
    )
    assert as_user(alice).post("/projects/alpha/budget/", VALID).status_code == 302
    assert Budget.objects.get(project=alpha).webhook_url == "https://hooks.example.org/x"


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("monthly_limit_usd", "-5", "more than 0"),
        ("monthly_limit_usd", "ten", "an amount in USD"),
        ("monthly_limit_usd", "1.001", "2 decimal places"),
        ("thresholds", "80, lots", "whole percentage"),
        ("thresholds", "0", "whole percentage"),
        ("recipients", "not-an-address", "not an email address"),
    ],
)
def test_it_shows_field_errors(as_user, alpha, alice, field, value, message):
    r = as_user(alice).post("/projects/alpha/budget/", VALID | {field: value})
    assert r.status_code == 400
    html = r.content.decode()
    assert f'id="budget-{field}_error"' in html
    assert message in html
    assert not Budget.objects.exists()


def test_a_hard_limit_on_an_environment_is_refused_with_a_message(as_user, alpha, alice):
    r = as_user(alice).post("/projects/alpha/budget/", VALID | {"environment": "dev"})
    assert r.status_code == 400
    assert "whole project" in r.content.decode()
    assert not Budget.objects.exists()


def test_an_unknown_environment_is_a_field_error(as_user, alpha, alice):
    r = as_user(alice).post("/projects/alpha/budget/", VALID | {"environment": "nope"})
    assert r.status_code == 400
    assert 'id="budget-environment_error"' in r.content.decode()


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_members_and_viewers_read_the_budget_but_cannot_change_it(
    as_user, alpha, alice, who, request
):
    budgets.set_budget(alpha, monthly_limit_usd="50", by=alice)
    _spend(alpha, "10.00")
    client = as_user(request.getfixturevalue(who))
    html = client.get("/projects/alpha/budget/").content.decode()
    assert "$10.00" in html and "$50.00" in html
    assert "20.0 %" in html
    assert "Save budget" not in html
    assert "Only admins change it" in html
    assert client.post("/projects/alpha/budget/", VALID).status_code == 403
    assert client.post("/projects/alpha/budget/remove/", {"environment": ""}).status_code == 403
    assert Budget.objects.get().monthly_limit_usd == Decimal("50.00")


def test_a_non_member_gets_404(as_user, alpha, beta, dave):
    client = as_user(dave)
    assert client.get("/projects/alpha/budget/").status_code == 404
    assert client.post("/projects/alpha/budget/", VALID).status_code == 404
    assert client.get("/projects/alpha/alerts/").status_code == 404


def test_an_admin_removes_a_budget(as_user, alpha, alice):
    budgets.set_budget(alpha, monthly_limit_usd="50", by=alice)
    r = as_user(alice).post("/projects/alpha/budget/remove/", {"environment": ""})
    assert r.status_code == 302
    assert not Budget.objects.exists()
    assert AuditEvent.objects.filter(action="budget.remove", actor=alice).exists()


def test_the_forecast_shows_once_there_are_three_days_of_data(as_user, alpha, alice):
    budget = budgets.set_budget(alpha, monthly_limit_usd="50", by=alice)
    html = as_user(alice).get("/projects/alpha/budget/").content.decode()
    assert "after 3 days of data" in html
    assert budget.forecast() is None


def test_the_alerts_page_shows_delivery_status(as_user, alpha, alice, charlie):
    budget = budgets.set_budget(alpha, monthly_limit_usd="50", by=alice)
    now = timezone.now()
    BudgetAlert.objects.create(
        budget=budget,
        period=budgets.period_start(),
        kind="threshold",
        threshold=80,
        spend_usd=Decimal("41.5"),
        limit_usd=Decimal(50),
        sent_at=now,
        attempts=1,
    )
    BudgetAlert.objects.create(
        budget=budget,
        period=budgets.period_start(),
        kind="threshold",
        threshold=100,
        spend_usd=Decimal("50.2"),
        limit_usd=Decimal(50),
        attempts=3,
        last_error="SMTPServerDisconnected: gone",
        created_at=now + timedelta(seconds=1),
    )
    HealthAlert.objects.create(project=alpha, kind="unpriced_model", episode_key="mystery-model")
    html = as_user(charlie).get("/projects/alpha/alerts/").content.decode()
    assert "80% of the budget" in html and "$41.50" in html
    assert "SMTPServerDisconnected: gone" in html
    assert "failing" in html and "sent" in html
    assert "mystery-model" in html and "unpriced model" in html


def test_the_alerts_page_tells_what_to_do_when_empty(as_user, alpha, bob):
    html = as_user(bob).get("/projects/alpha/alerts/").content.decode()
    assert "No alerts yet." in html
