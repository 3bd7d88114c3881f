"""GET/PUT/DELETE /api/v1/projects/{slug}/budget: who may read and write, what the
response shows, bad input answered with 4xx and a message, the audit trail."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from dashboard.redis_client import get_redis
from tests.usage.budget_helpers import add_test_price, spend
from usage.models import Budget

URL = "/api/v1/projects/alpha/budget"
BODY = {"monthly_limit_usd": "100.00", "thresholds": [80, 100], "hard_limit": True,
        "recipients": ["finance@example.org"]}  # fmt: skip


@pytest.fixture
def production(db, alpha):
    add_test_price()
    return alpha.environments.get(name="production")


def test_each_role_reads_and_only_admins_write(production, api_as, alice, bob, charlie, dave):
    assert api_as(alice).get(URL).status_code == 404  # no budget yet
    assert api_as(bob).put(URL, BODY).status_code == 403
    assert api_as(charlie).put(URL, BODY).status_code == 403
    assert api_as(dave).put(URL, BODY).status_code == 404  # alpha is invisible to dave
    assert api_as(None).put(URL, BODY).status_code == 401
    assert not Budget.objects.exists()

    assert api_as(alice).put(URL, BODY).status_code == 200
    for user in (alice, bob, charlie):
        assert api_as(user).get(URL).status_code == 200
    assert api_as(dave).get(URL).status_code == 404
    assert api_as(None).get(URL).status_code == 401
    for user, status in ((bob, 403), (charlie, 403), (dave, 404)):
        assert api_as(user).delete(URL).status_code == status
    assert Budget.objects.count() == 1


def test_it_shows_spend_percent_and_forecast_as_decimal_strings(production, api_as, alice):
    spend(production, "85", timezone.now())
    response = api_as(alice).put(URL, BODY)
    assert response.status_code == 200
    data = response.json()
    assert {k: data[k] for k in ("monthly_limit_usd", "thresholds", "hard_limit", "recipients",
                                 "spend_this_period", "percent", "forecast_usd")} == {
        "monthly_limit_usd": "100.00", "thresholds": [80, 100], "hard_limit": True,
        "recipients": ["finance@example.org"], "spend_this_period": "85.00", "percent": "85.0",
        "forecast_usd": None,  # fewer than 3 days of data
    }  # fmt: skip
    assert data["environment"] is None
    assert [(a["kind"], a["threshold"]) for a in data["alerts"]] == [("threshold", 80)]
    assert get_redis().get(f"km:budget:{production.project_id}") == b"1000000000000"


def test_setting_a_budget_is_audited_without_the_webhook_url(production, api_as, alice):
    hook = "https://hooks.example.com/services/T0/B0/very-secret-token"
    api_as(alice).put(URL, {**BODY, "webhook_url": hook})
    response = api_as(alice).put(URL, {**BODY, "monthly_limit_usd": 250, "webhook_url": hook})
    assert response.status_code == 200
    assert response.json()["monthly_limit_usd"] == "250.00"
    assert response.json()["webhook"] is True
    assert "secret-token" not in response.content.decode()
    event = AuditEvent.objects.filter(action="budget.set").first()
    assert event.actor == alice
    assert event.detail["old"]["monthly_limit_usd"] == "100.00"
    assert event.detail["new"]["monthly_limit_usd"] == "250.00"
    assert event.detail["new"]["webhook_host"] == "hooks.example.com"
    assert "secret-token" not in json.dumps(event.detail)


def test_an_environment_can_have_its_own_budget(production, api_as, alice):
    staging_url = f"{URL}?environment=staging"
    body = {"monthly_limit_usd": "40", "thresholds": [50]}
    response = api_as(alice).put(staging_url, body)
    assert response.status_code == 200
    assert response.json()["environment"] == "staging"
    assert response.json()["hard_limit"] is False
    assert api_as(alice).get(staging_url).json()["monthly_limit_usd"] == "40.00"
    assert api_as(alice).get(URL).status_code == 404  # no project-wide budget
    response = api_as(alice).get(f"{URL}?environment=nope")
    assert response.status_code == 400
    assert response.json()["detail"] == "Alpha has no environment named 'nope'."


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"monthly_limit_usd": "0"}, 400, "monthly_limit_usd must be more than 0."),
        ({"monthly_limit_usd": "12.345"}, 400, "at most 2 decimal places"),
        ({"monthly_limit_usd": "a lot"}, 422, None),
        ({"monthly_limit_usd": None}, 422, None),
        ({"thresholds": [0, 80]}, 400, "from 1 to 1000"),
        ({"thresholds": []}, 400, "list of percentages"),
        ({"thresholds": ["eighty"]}, 422, None),
        ({"recipients": ["someone"]}, 400, "'someone' is not an email address."),
        ({"webhook_url": "javascript:alert(1)"}, 400, "http(s) URL"),
        ({"hard_limit": "maybe"}, 422, None),
    ],
)
def test_it_rejects_bad_input(production, api_as, alice, change, status, message):
    response = api_as(alice).put(URL, {**BODY, **change})
    assert response.status_code == status
    if message:
        assert message in response.json()["detail"]
    assert not Budget.objects.exists()


def test_a_hard_limit_is_for_the_whole_project(production, api_as, alice):
    response = api_as(alice).put(f"{URL}?environment=staging", BODY)
    assert response.status_code == 400
    assert "whole project" in response.json()["detail"]


def test_deleting_the_budget_removes_the_hard_limit(production, api_as, alice):
    api_as(alice).put(URL, BODY)
    key = f"km:budget:{production.project_id}"
    assert get_redis().get(key) is not None
    assert api_as(alice).delete(URL).status_code == 204
    assert get_redis().get(key) is None
    assert api_as(alice).get(URL).status_code == 404
    assert AuditEvent.objects.filter(action="budget.remove").count() == 1
