"""`manage.py seed_demo`: a small --days 3 run on a fixed mid-month afternoon."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Sum

from accounts.models import GatewayToken, Project, ProviderKey, Role, User
from usage import demo
from usage.models import ApiCall, Budget, BudgetAlert, DailyUsage, HourlyUsage

NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)


@pytest.fixture
def seeded(db, settings):
    settings.TIME_ZONE = "UTC"
    with time_machine.travel(NOW, tick=False):
        out = StringIO()
        call_command("seed_demo", "--days", "3", stdout=out)
        yield out.getvalue()


def test_it_creates_three_projects_with_environments_and_roles(seeded):
    projects = Project.objects.order_by("slug")
    assert [p.slug for p in projects] == ["docs-search", "shop-assistant", "support-bot"]
    member = User.objects.get(email=demo.MEMBER_EMAIL)
    viewer = User.objects.get(email=demo.VIEWER_EMAIL)
    for project in projects:
        assert {e.name for e in project.environments.all()} == {"production", "staging", "dev"}
        assert project.role_of(member) == Role.MEMBER
        assert project.role_of(viewer) == Role.VIEWER
    assert User.objects.get(email=demo.ADMIN_EMAIL).is_staff
    # The passwords are printed once, so someone can log in as each of them.
    assert seeded.count("password: ") == 3


def test_keys_have_an_overdue_one_a_due_one_and_fresh_ones(seeded):
    active = ProviderKey.objects.filter(status=ProviderKey.Status.ACTIVE)
    stages = sorted(k.rotation_stage() for k in active)
    assert stages.count("overdue") == 1
    assert stages.count("due") == 1
    assert stages.count("ok") == len(stages) - 2 >= 5
    overdue = next(k for k in active if k.rotation_stage() == "overdue")
    assert overdue.age_days() >= 90
    due = next(k for k in active if k.rotation_stage() == "due")
    assert 76 <= due.age_days() < 90
    for key in ProviderKey.objects.all():
        assert key.base_url == demo.DEMO_BASE_URL
        assert key.prefix == "sk-proj-" and len(key.last4) == 4
        assert key.last4 not in key.secret_encrypted  # stored encrypted, not in clear
    assert GatewayToken.objects.count() >= 9


def test_one_project_is_past_80_percent_of_its_budget_and_alerted(seeded):
    with time_machine.travel(NOW, tick=False):
        percents = {
            b.project.slug: b.percent(b.spend_this_period())
            for b in Budget.objects.select_related("project")
        }
    assert len(percents) == 3
    assert 80 <= percents["shop-assistant"] < 100
    assert all(p < 80 for slug, p in percents.items() if slug != "shop-assistant")
    alert = BudgetAlert.objects.get(budget__project__slug="shop-assistant", threshold=80)
    assert alert.spend_usd >= alert.limit_usd * 80 / 100


def test_rollups_equal_the_call_log(seeded):
    calls = ApiCall.objects.count()
    assert 2000 < calls < 20000  # three days of three projects
    assert DailyUsage.objects.aggregate(n=Sum("calls"))["n"] == calls
    assert HourlyUsage.objects.aggregate(n=Sum("calls"))["n"] == calls
    # Summed in Python: SQLite's SUM of decimals goes through floats.
    rolled = sum(DailyUsage.objects.values_list("cost_usd", flat=True), Decimal(0))
    logged = sum(ApiCall.objects.exclude(cost_usd=None).values_list("cost_usd", flat=True),
                 Decimal(0))  # fmt: skip
    assert rolled == logged > 0
    # Several models, one of them unpriced (cost NULL, never $0), and a few errors.
    models = set(ApiCall.objects.values_list("model", flat=True))
    assert {"gpt-4o-mini", "gpt-4o", "text-embedding-3-small", demo.UNPRICED_MODEL} <= models
    unpriced = ApiCall.objects.filter(model=demo.UNPRICED_MODEL, status_code=200)
    assert unpriced.exists() and not unpriced.filter(cost_usd__isnull=False).exists()
    errors = ApiCall.objects.filter(status_code__gte=400).count()
    assert 0 < errors < calls * 0.05
    # No call is in the future.
    assert not ApiCall.objects.filter(created_at__gt=NOW).exists()


def test_weekdays_are_busier_than_weekends(db):
    spec = demo.PROJECTS[0]
    first, last = datetime(2026, 3, 1).date(), datetime(2026, 3, 31).date()
    saturday, monday = datetime(2026, 3, 14).date(), datetime(2026, 3, 16).date()
    assert demo.calls_on(spec, monday, first, last) > 1.5 * demo.calls_on(
        spec, saturday, first, last
    )


def test_running_it_twice_duplicates_nothing(seeded):
    counts = (User.objects.count(), Project.objects.count(), ProviderKey.objects.count(),
              GatewayToken.objects.count(), Budget.objects.count(), ApiCall.objects.count(),
              BudgetAlert.objects.count())  # fmt: skip
    limits = list(Budget.objects.order_by("pk").values_list("monthly_limit_usd", flat=True))
    with time_machine.travel(NOW, tick=False):
        out = StringIO()
        call_command("seed_demo", "--days", "3", stdout=out)
    assert (User.objects.count(), Project.objects.count(), ProviderKey.objects.count(),
            GatewayToken.objects.count(), Budget.objects.count(), ApiCall.objects.count(),
            BudgetAlert.objects.count()) == counts  # fmt: skip
    assert list(Budget.objects.order_by("pk").values_list("monthly_limit_usd", flat=True)) == (
        limits
    )
    assert "stored 0 new" in out.getvalue()
    assert "password unchanged" in out.getvalue()
    assert DailyUsage.objects.aggregate(n=Sum("calls"))["n"] == ApiCall.objects.count()


def test_it_reuses_the_first_admin_of_make_run(db, settings):
    settings.TIME_ZONE = "UTC"
    admin = User.objects.create_superuser(demo.ADMIN_EMAIL, "s3cret-pass-word", name="Admin")
    with time_machine.travel(NOW, tick=False):
        out = StringIO()
        call_command("seed_demo", "--days", "1", stdout=out)
    admin.refresh_from_db()
    assert admin.check_password("s3cret-pass-word")
    assert all(p.role_of(admin) == Role.ADMIN for p in Project.objects.all())
    assert admin.memberships.count() == 3
