"""Demo data for `manage.py seed_demo` (and the first `make run` in local mode).

Three projects with environments, an admin, a member and a viewer, provider keys of
different ages (one overdue, one due for rotation), gateway tokens, budgets (one past
80 % this month) and N days of calls. The calls go through the real pipeline
(CallRecord → pipeline.enqueue → pipeline.drain), so the call log, the rollups and the
month-to-date counters are exactly what the gateway would have produced.

Idempotent: rows are looked up before they are made, and every call has a
deterministic request id (demo-<project>-<day>-<n>), so a second run stores only the
calls of today that happened since the first one.
"""

from __future__ import annotations

import math
import random
import secrets
import string
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_UP, Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from accounts.keys import add_provider_key, revoke_key
from accounts.models import Environment, GatewayToken, Project, ProviderKey, Role, User
from accounts.projects import create_project, set_member_role
from accounts.tokens import create_gateway_token
from usage import budgets, pipeline
from usage.models import Budget, BudgetAlert, DailyUsage
from usage.records import CallRecord

ADMIN_EMAIL = "admin@keymeter.local"  # the admin the first `make run` creates
MEMBER_EMAIL = "member@keymeter.local"
VIEWER_EMAIL = "viewer@keymeter.local"
# Port 9 is "discard": a demo key can never reach a real provider.
DEMO_BASE_URL = "http://127.0.0.1:9/v1"
UNPRICED_MODEL = "acme-llama-3-70b"
CHUNK = 5000  # records enqueued between two drains


@dataclass(frozen=True)
class ModelMix:
    model: str
    weight: float
    endpoint: str
    input_mean: int
    output_mean: int  # 0 for embeddings
    latency_ms: int


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    slug: str
    calls_per_day: int  # a weekday at the end of the period; the start has ~55 % of it
    mix: tuple[ModelMix, ...]
    key_ages: dict[str, int]  # environment → age of its active key in days
    tokens: dict[str, tuple[str, ...]]  # environment → gateway token names
    budget_percent: int | None = None  # month-to-date spend as % of the limit
    budget_headroom: Decimal = Decimal("1.8")  # else: limit = last 30 days × this
    incident_days_ago: int | None = None  # a day with an error spike


CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
ENV_SHARE = {"production": 0.80, "staging": 0.12, "dev": 0.08}

PROJECTS = (
    ProjectSpec(
        "Shop Assistant", "shop-assistant", 1300,
        (ModelMix("gpt-4o-mini", 0.68, CHAT, 900, 260, 700),
         ModelMix("gpt-4o", 0.14, CHAT, 1400, 420, 1300),
         ModelMix("text-embedding-3-small", 0.18, EMBED, 350, 0, 120)),
        {"production": 97, "staging": 21, "dev": 9},
        {"production": ("web-backend", "order-worker"), "staging": ("ci",), "dev": ("laptop",)},
        budget_percent=87,
    ),
    ProjectSpec(
        "Support Bot", "support-bot", 700,
        (ModelMix("gpt-4o-mini", 0.52, CHAT, 1600, 300, 800),
         ModelMix("gpt-4o", 0.30, CHAT, 1800, 380, 1400),
         ModelMix("text-embedding-3-small", 0.12, EMBED, 500, 0, 140),
         ModelMix(UNPRICED_MODEL, 0.06, CHAT, 1200, 350, 1100)),
        {"production": 80, "staging": 33, "dev": 6},
        {"production": ("helpdesk",), "staging": ("ci",), "dev": ("laptop",)},
        incident_days_ago=17,
    ),
    ProjectSpec(
        "Docs Search", "docs-search", 500,
        (ModelMix("text-embedding-3-small", 0.74, EMBED, 700, 0, 110),
         ModelMix("gpt-4o-mini", 0.26, CHAT, 2200, 180, 650)),
        {"production": 41, "staging": 3, "dev": 14},
        {"production": ("indexer", "search-api"), "staging": ("ci",)},
        budget_headroom=Decimal("2.5"),
    ),
)  # fmt: skip


@dataclass
class SeedReport:
    users: list[tuple[str, str, str | None]] = field(default_factory=list)  # email, role, pw
    projects: list[str] = field(default_factory=list)
    keys: int = 0
    tokens: int = 0
    calls_pushed: int = 0
    calls_inserted: int = 0
    cost_usd: Decimal = Decimal(0)
    budgets: list[str] = field(default_factory=list)
    alerts: int = 0

    def lines(self) -> Iterator[str]:
        for email, role, password in self.users:
            shown = f"password: {password}" if password else "password unchanged"
            yield f"user {email} ({role}) — {shown}"
        yield f"projects: {', '.join(self.projects)}"
        yield f"created {self.keys} provider key(s) and {self.tokens} gateway token(s)"
        yield (
            f"pushed {self.calls_pushed} calls through the pipeline; stored "
            f"{self.calls_inserted} new (${self.cost_usd.quantize(Decimal('0.01'))})"
        )
        yield from self.budgets
        yield f"budget alerts created: {self.alerts}"


# People, projects, keys, tokens


def _user(email: str, name: str, staff: bool, report: SeedReport, role: str) -> User:
    user = User.objects.filter(email=email).first()
    password = None
    if user is None:
        password = secrets.token_urlsafe(12)
        make = User.objects.create_superuser if staff else User.objects.create_user
        user = make(email, password, name=name)
    report.users.append((email, role, password))
    return user


def _fake_secret(rng: random.Random) -> str:
    # Shaped like a project key (sk-proj-… T3BlbkFJ …) but random: it opens nothing.
    alphabet = string.ascii_letters + string.digits
    body = "".join(rng.choice(alphabet) for _ in range(64))
    tail = "".join(rng.choice(alphabet) for _ in range(64))
    return f"sk-proj-{body}T3BlbkFJ{tail}"


def _ensure_key(env: Environment, age_days: int, admin: User, report: SeedReport) -> None:
    if env.active_key() is not None:
        return
    rng = random.SystemRandom()
    now = timezone.now()
    if age_days < 90:
        # The key this one replaced: it served the calls before the current key's issue.
        old = add_provider_key(
            env, _fake_secret(rng), name=f"{env.project.slug}-{env.name}-old",
            base_url=DEMO_BASE_URL, issued_at=now - timedelta(days=age_days + 92), by=admin,
        )  # fmt: skip
        revoke_key(old, by=admin)
        report.keys += 1
    issued = now - timedelta(days=age_days, hours=2)
    add_provider_key(env, _fake_secret(rng), name=f"{env.project.slug}-{env.name}-{issued:%Y%m%d}",
                     base_url=DEMO_BASE_URL, issued_at=issued, by=admin)  # fmt: skip
    report.keys += 1


def _ensure_project(spec: ProjectSpec, admin: User, member: User, viewer: User,
                    report: SeedReport) -> Project:  # fmt: skip
    project = Project.objects.filter(slug=spec.slug).first()
    if project is None:
        project = create_project(spec.name, spec.slug, owner=admin)
    # A role someone changed since the last run is left alone.
    for user, role in ((admin, Role.ADMIN), (member, Role.MEMBER), (viewer, Role.VIEWER)):
        if not project.memberships.filter(user=user).exists():
            set_member_role(project, user, role, by=admin)
    for env_name, age in spec.key_ages.items():
        env, _ = Environment.objects.get_or_create(project=project, name=env_name)
        _ensure_key(env, age, admin, report)
        for token_name in spec.tokens.get(env_name, ()):
            if not GatewayToken.objects.filter(environment=env, name=token_name).exists():
                create_gateway_token(env, token_name, by=admin)
                report.tokens += 1
    report.projects.append(spec.slug)
    return project


# Calls


def _hour_weights() -> list[float]:
    # Office hours peak in the afternoon; nights keep a trickle of batch jobs.
    return [0.25 + math.exp(-(((h - 14) / 4.0) ** 2)) for h in range(24)]


HOURS = list(range(24))
HOUR_WEIGHTS = _hour_weights()


def calls_on(spec: ProjectSpec, day: date, first: date, last: date) -> int:
    """How many calls the project makes on a day: growth, weekends and some noise."""
    span = max((last - first).days, 1)
    growth = 0.55 + 0.45 * ((day - first).days / span)
    weekend = 0.45 if day.weekday() >= 5 else 1.0
    noise = random.Random(_seed(spec.slug, day, "n")).uniform(0.9, 1.1)
    return max(int(spec.calls_per_day * growth * weekend * noise), 1)


def _seed(slug: str, day: date, salt: str) -> int:
    return zlib.crc32(f"{slug}:{day.isoformat()}:{salt}".encode())


@dataclass
class _Route:
    environment_id: int
    keys: list[tuple[datetime, int]]  # (issued_at, key id), oldest first
    token_ids: list[int]

    def key_at(self, when: datetime) -> int | None:
        current = None
        for issued, key_id in self.keys:
            if issued <= when:
                current = key_id
        return current or (self.keys[0][1] if self.keys else None)


def _routes(project: Project) -> dict[str, _Route]:
    routes = {}
    for env in project.environments.all():
        keys = list(ProviderKey.objects.filter(environment=env, kind=ProviderKey.Kind.API)
                    .order_by("issued_at").values_list("issued_at", "id"))  # fmt: skip
        tokens = list(GatewayToken.objects.filter(environment=env, revoked_at__isnull=True)
                      .order_by("id").values_list("id", flat=True))  # fmt: skip
        routes[env.name] = _Route(env.pk, keys, tokens)
    return routes


def _one_call(rng: random.Random, spec: ProjectSpec, project: Project, route: _Route,
              created: datetime, request_id: str, error_rate: float) -> CallRecord:  # fmt: skip
    mix = rng.choices(spec.mix, weights=[m.weight for m in spec.mix])[0]
    record = CallRecord(
        request_id=request_id, created_at=created.timestamp(), project_id=project.pk,
        environment_id=route.environment_id, provider_key_id=route.key_at(created),
        gateway_token_id=rng.choice(route.token_ids) if route.token_ids else None,
        endpoint=mix.endpoint, model=mix.model,
    )  # fmt: skip
    roll = rng.random()
    if roll < error_rate:
        record.status_code, record.error_type = (
            (429, "rate_limit_exceeded") if roll < error_rate * 0.7 else (500, "server_error")
        )
        record.latency_ms = int(rng.uniform(40, 400))
        return record
    input_tokens = max(int(rng.lognormvariate(math.log(mix.input_mean), 0.55)), 1)
    record.input_tokens = input_tokens
    if mix.output_mean:
        record.output_tokens = max(int(rng.lognormvariate(math.log(mix.output_mean), 0.5)), 1)
        if input_tokens >= 1024 and rng.random() < 0.3:  # prompt caching: 128-token blocks
            record.cached_input_tokens = (input_tokens // 2) // 128 * 128
        record.stream = rng.random() < 0.4
    record.latency_ms = max(int(rng.lognormvariate(math.log(mix.latency_ms), 0.35)), 20)
    if record.stream:
        record.ttfb_ms = max(int(record.latency_ms * rng.uniform(0.1, 0.3)), 10)
    return record


def day_calls(
    spec: ProjectSpec, project: Project, routes: dict[str, _Route], day: date, first: date,
    last: date, tz: ZoneInfo, now: datetime,
) -> Iterator[CallRecord]:  # fmt: skip
    """The day's calls, the same every run (seeded by project and day), up to `now`."""
    rng = random.Random(_seed(spec.slug, day, "calls"))
    incident = (spec.incident_days_ago is not None
                and day == last - timedelta(days=spec.incident_days_ago))  # fmt: skip
    error_rate = 0.08 if incident else 0.012
    envs = [name for name in ENV_SHARE if name in routes]
    shares = [ENV_SHARE[name] for name in envs]
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    for n in range(calls_on(spec, day, first, last)):
        route = routes[rng.choices(envs, weights=shares)[0]]
        hour = rng.choices(HOURS, weights=HOUR_WEIGHTS)[0]
        created = midnight + timedelta(hours=hour, seconds=rng.uniform(0, 3600))
        record = _one_call(rng, spec, project, route, created.astimezone(UTC),
                           f"demo-{spec.slug}-{day:%Y%m%d}-{n:05d}", error_rate)  # fmt: skip
        if created <= now:
            yield record


def push_calls(pairs: list[tuple[ProjectSpec, Project]], days: int, now: datetime,
               report: SeedReport) -> None:  # fmt: skip
    """Enqueue every project's calls and drain the stream as the flush worker would."""
    tz = ZoneInfo(settings.TIME_ZONE)
    last = now.astimezone(tz).date()
    first = last - timedelta(days=days - 1)
    pushed = 0

    def drain() -> None:
        result = pipeline.drain(batch_size=2000)
        report.calls_inserted += result.inserted
        report.cost_usd += result.cost_usd

    for spec, project in pairs:
        routes = _routes(project)
        day = first
        while day <= last:
            for record in day_calls(spec, project, routes, day, first, last, tz, now):
                pipeline.enqueue(record)
                pushed += 1
                if pushed % CHUNK == 0:
                    drain()
            day += timedelta(days=1)
    drain()
    report.calls_pushed = pushed


# Budgets


def _spend(project: Project, since: date) -> Decimal:
    total = DailyUsage.objects.filter(project=project, day__gte=since).aggregate(
        s=Sum("cost_usd"))["s"]  # fmt: skip
    return total or Decimal(0)


def _ensure_budget(spec: ProjectSpec, project: Project, admin: User, now: datetime,
                   report: SeedReport) -> None:  # fmt: skip
    budget = Budget.objects.filter(project=project, environment__isnull=True).first()
    if budget is None:
        if spec.budget_percent:
            spend = _spend(project, budgets.period_start(now))
            limit = spend * 100 / spec.budget_percent
        else:
            last_30 = _spend(project, budgets.local_now(now).date() - timedelta(days=29))
            # A round figure, as people set them: up to the next $5.
            limit = (last_30 * spec.budget_headroom / 5).quantize(Decimal(1), ROUND_UP) * 5
        limit = max(limit.quantize(Decimal("0.01"), rounding=ROUND_UP), Decimal("1.00"))
        budget = budgets.set_budget(project, monthly_limit_usd=limit, thresholds=[80, 100],
                                    by=admin)  # fmt: skip
    spend = budget.spend_this_period(now)
    report.budgets.append(f"budget {spec.slug}: ${spend.quantize(Decimal('0.01'))} of "
                          f"${budget.monthly_limit_usd} ({budget.percent(spend)} %)")  # fmt: skip


def seed_demo(days: int = 90, now: datetime | None = None) -> SeedReport:
    """Create (or complete) the demo data; see the module docstring."""
    if days < 1:
        raise ValueError("days must be at least 1")
    now = now or timezone.now()
    report = SeedReport()
    admin = _user(ADMIN_EMAIL, "Admin", True, report, "admin")
    member = _user(MEMBER_EMAIL, "Mei Member", False, report, "member")
    viewer = _user(VIEWER_EMAIL, "Victor Viewer", False, report, "viewer")
    pairs = [(spec, _ensure_project(spec, admin, member, viewer, report)) for spec in PROJECTS]
    push_calls(pairs, days, now, report)
    for spec, project in pairs:
        _ensure_budget(spec, project, admin, now, report)
    budgets.run_checks(None, now)
    report.alerts = BudgetAlert.objects.filter(budget__project__in=[p for _, p in pairs]).count()
    return report
