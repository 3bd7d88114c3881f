"""The usage explorer: filter and group the daily rollups, chart + table + CSV, and
the call log's row view.

usage_rows() is the one query function: the table and `?format=csv` both render its
rows, so the CSV holds exactly what the page shows. The row view (calls()) is the only
page that reads ApiCall; it pages by keyset on (created_at, id), newest first, so
each page is an index range scan however deep the user pages.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Environment, GatewayToken, Project, ProviderKey, User
from dashboard import charts
from usage.models import ApiCall, DailyUsage
from usage.rollups import GROUPS, money_str

MAX_DAYS = 366
PAGE_SIZE = 50
# (field, heading): the table's columns after the group column, and the CSV's.
COLUMNS = (
    ("calls", gettext_lazy("Calls")),
    ("errors", gettext_lazy("Errors")),
    ("input_tokens", gettext_lazy("Input")),
    ("cached_input_tokens", gettext_lazy("Cached")),
    ("output_tokens", gettext_lazy("Output")),
    ("reasoning_tokens", gettext_lazy("Reasoning")),
    ("cost", gettext_lazy("Cost (USD)")),
    ("unpriced_calls", gettext_lazy("Unpriced")),
)
GROUP_LABELS = {
    "day": gettext_lazy("Day"),
    "model": gettext_lazy("Model"),
    "environment": gettext_lazy("Environment"),
    "key": gettext_lazy("Key"),
}


class AuthenticatedHttpRequest(HttpRequest):
    user: User


@dataclass
class Scope:
    """What the user may see: their projects, with the choices the filters offer."""

    projects: dict[int, Project]
    environments: dict[int, Environment]
    keys: dict[int, ProviderKey]
    tokens: dict[int, GatewayToken]

    @classmethod
    def for_user(cls, user: User) -> Scope:
        projects = {p.pk: p for p in Project.visible_to(user).order_by("name")}
        ids = list(projects)
        environments = {
            e.pk: e for e in Environment.objects.filter(project__in=ids).order_by("name")
        }
        for e in environments.values():
            e.project = projects[e.project_id]
        keys = {k.pk: k for k in ProviderKey.objects.filter(project__in=ids).order_by("name")}
        tokens = {t.pk: t for t in GatewayToken.objects.filter(project__in=ids).order_by("name")}
        return cls(projects, environments, keys, tokens)

    def environment_label(self, env_id: int) -> str:
        env = self.environments.get(env_id)
        return f"{env.project.slug} / {env.name}" if env else f"#{env_id}"

    def key_label(self, key_id: int) -> str:
        if not key_id:
            return _("no key (ingest API)")
        key = self.keys.get(key_id)
        return f"{key.name} ({key.masked})" if key else f"#{key_id}"

    def token_label(self, token_id: int | None) -> str:
        token = self.tokens.get(token_id or 0)
        return token.name if token else ""


class ExplorerForm(forms.Form):
    start = forms.DateField(label=gettext_lazy("From"), required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    end = forms.DateField(label=gettext_lazy("To"), required=False,
                          widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    project = forms.ChoiceField(label=gettext_lazy("Project"), required=False)
    environment = forms.ChoiceField(label=gettext_lazy("Environment"), required=False)
    model = forms.CharField(label=gettext_lazy("Model"), required=False, max_length=100)
    key = forms.TypedChoiceField(label=gettext_lazy("Key"), required=False, coerce=int,
                                 empty_value=None)  # fmt: skip
    token = forms.TypedChoiceField(label=gettext_lazy("Token"), required=False, coerce=int,
                                   empty_value=None)  # fmt: skip
    group_by = forms.ChoiceField(label=gettext_lazy("Group by"), required=False,
                                 choices=list(GROUP_LABELS.items()))  # fmt: skip
    errors_only = forms.BooleanField(label=gettext_lazy("Errors only"), required=False)
    cursor = forms.RegexField(regex=r"^\d{1,17}-\d{1,18}$", required=False,
                              widget=forms.HiddenInput)  # fmt: skip

    def __init__(self, scope: Scope, data: Any, today: date) -> None:
        # Show the default range in the date inputs, not empty boxes.
        data = data.copy()
        if not data.get("start") and not data.get("end"):
            data["start"] = (today - timedelta(days=29)).isoformat()
            data["end"] = today.isoformat()
        super().__init__(data)
        self.scope, self.today = scope, today
        everything = [("", _("all"))]
        cast(forms.ChoiceField, self.fields["project"]).choices = everything + [
            (p.slug, p.name) for p in scope.projects.values()
        ]
        names = sorted({e.name for e in scope.environments.values()})
        cast(forms.ChoiceField, self.fields["environment"]).choices = everything + [
            (n, n) for n in names
        ]
        cast(forms.ChoiceField, self.fields["key"]).choices = everything + [
            (k.pk, f"{scope.projects[k.project_id].slug}: {k.name} ({k.masked})")
            for k in scope.keys.values()
        ]
        cast(forms.ChoiceField, self.fields["token"]).choices = everything + [
            (t.pk, f"{scope.projects[t.project_id].slug}: {t.name} ({t.masked})")
            for t in scope.tokens.values()
        ]
        self.fields["start"].widget.attrs["max"] = today.isoformat()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        end = data.get("end") or self.today
        start = data.get("start") or end - timedelta(days=29)
        if start > end:
            self.add_error("start", _("The start date is after the end date."))
        elif (end - start).days >= MAX_DAYS:
            self.add_error("start", _("Choose at most %(n)s days.") % {"n": MAX_DAYS})
        data["start"], data["end"] = start, end
        data["group_by"] = data.get("group_by") or "day"
        return data


@dataclass
class Query:
    project_ids: list[int]
    start: date
    end: date
    environment_ids: list[int] | None = None
    model: str | None = None
    key_id: int | None = None
    token_id: int | None = None
    group_by: str = "day"
    errors_only: bool = False

    @classmethod
    def from_form(cls, form: ExplorerForm) -> Query:
        data, scope = form.cleaned_data, form.scope
        ids = list(scope.projects)
        if data.get("project"):
            ids = [p.pk for p in scope.projects.values() if p.slug == data["project"]]
        env_ids = None
        if data.get("environment"):
            env_ids = [
                e.pk for e in scope.environments.values()
                if e.name == data["environment"] and e.project_id in ids
            ]  # fmt: skip
        return cls(
            ids, data["start"], data["end"], env_ids, data.get("model") or None,
            data.get("key"), data.get("token"), data["group_by"], data.get("errors_only", False),
        )  # fmt: skip


def _filtered(qs: QuerySet, q: Query, key_field: str, token_field: str) -> QuerySet:
    if q.environment_ids is not None:
        qs = qs.filter(environment_id__in=q.environment_ids)
    if q.model is not None:
        qs = qs.filter(model=q.model)
    if q.key_id is not None:
        qs = qs.filter(**{key_field: q.key_id})
    if q.token_id is not None:
        qs = qs.filter(**{token_field: q.token_id})
    return qs


def usage_rows(q: Query, scope: Scope) -> list[dict[str, Any]]:
    """The explorer's rows: DailyUsage summed per group, biggest cost first (days in order)."""
    column = GROUPS[q.group_by]
    usage = DailyUsage.objects.filter(project__in=q.project_ids, day__range=(q.start, q.end))
    usage = _filtered(usage, q, "key_id", "token_id")
    grouped = list(usage.values(column).annotate(**charts.sums()).order_by(column))
    if q.group_by != "day":
        grouped.sort(key=lambda g: (-(g["cost"] or 0), -(g["calls"] or 0)))
    label = {
        "day": lambda v: v,
        "model": lambda v: v or "—",
        "environment": scope.environment_label,
        "key": scope.key_label,
    }[q.group_by]
    return [{"group": label(g[column]), **charts.numbers(g)} for g in grouped]


def chart_data(q: Query, rows: list[dict[str, Any]]) -> dict[str, Any]:
    if q.group_by == "day":
        # Days without calls are zero on the chart; the table lists days with calls.
        index = {row["group"]: row["cost"] for row in rows}
        days = charts.days_between(q.start, q.end)
        labels, values = [d.isoformat() for d in days], [index.get(d) for d in days]
    else:
        labels, values = [str(row["group"]) for row in rows], [row["cost"] for row in rows]
    return {
        "labels": labels,
        "datasets": [{"label": _("Cost"), "data": [money_str(v) for v in values]}],
        "horizontal": q.group_by != "day",
        "currency": "USD",
    }


def csv_response(q: Query, rows: list[dict[str, Any]]) -> HttpResponse:
    name = f"keymeter-usage-{q.start:%Y%m%d}-{q.end:%Y%m%d}-by-{q.group_by}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow([q.group_by] + [f if f != "cost" else "cost_usd" for f, _h in COLUMNS])
    for row in rows:
        cost = "unpriced" if row["unpriced_calls"] and not row["cost"] else money_str(row["cost"])
        group = row["group"].isoformat() if isinstance(row["group"], date) else row["group"]
        writer.writerow([group] + [cost if f == "cost" else row[f] for f, _h in COLUMNS])
    return response


@login_required
def explore(request: AuthenticatedHttpRequest) -> HttpResponse:
    scope = Scope.for_user(request.user)
    form = ExplorerForm(scope, request.GET, charts.today())
    ctx: dict[str, Any] = {"form": form, "scope": scope, "mode": "summary"}
    if not scope.projects:
        return render(request, "dashboard/explorer.html", ctx)
    if not form.is_valid():
        return render(request, "dashboard/explorer.html", ctx, status=400)
    q = Query.from_form(form)
    rows = usage_rows(q, scope)
    if request.GET.get("format") == "csv":
        return csv_response(q, rows)
    query = request.GET.copy()
    query.pop("cursor", None)
    query.pop("format", None)
    ctx.update(q=q, rows=rows, chart=chart_data(q, rows), columns=COLUMNS,
               group_label=GROUP_LABELS[q.group_by], query=query.urlencode(),
               totals=_totals(rows))  # fmt: skip
    return render(request, "dashboard/explorer.html", ctx)


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {f: sum(r[f] for r in rows) for f, _h in COLUMNS if f != "cost"}
    out["cost"] = sum((r["cost"] for r in rows), charts.ZERO)
    return out


# The call log, by keyset


def _bounds(q: Query) -> tuple[datetime, datetime]:
    tz = ZoneInfo(settings.TIME_ZONE)
    start = datetime.combine(q.start, time(), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(q.end + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC)
    return start, end


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def encode_cursor(call: ApiCall) -> str:
    """Microseconds since the epoch and id: exact, and URL-safe as it is."""
    return f"{(call.created_at - EPOCH) // MICROSECOND}-{call.pk}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    micros, _sep, pk = cursor.partition("-")
    return EPOCH + int(micros) * MICROSECOND, int(pk)


def call_page(q: Query, cursor: str | None) -> tuple[list[ApiCall], str | None]:
    """One page of calls, newest first, after `cursor`; and the next page's cursor."""
    start, end = _bounds(q)
    calls = ApiCall.objects.filter(
        project__in=q.project_ids, created_at__gte=start, created_at__lt=end
    )
    calls = _filtered(calls, q, "provider_key_id", "gateway_token_id")
    if q.errors_only:
        calls = calls.filter(status_code__gte=400)
    if cursor:
        at, pk = decode_cursor(cursor)
        # (created_at, id) < (at, pk), written so the created_at bound is an index range.
        calls = calls.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk), created_at__lte=at)
    page = list(calls.order_by("-created_at", "-id")[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return page, encode_cursor(page[-1]) if more else None


@login_required
def calls(request: AuthenticatedHttpRequest) -> HttpResponse:
    scope = Scope.for_user(request.user)
    form = ExplorerForm(scope, request.GET, charts.today())
    ctx: dict[str, Any] = {"form": form, "scope": scope, "mode": "calls"}
    if not scope.projects:
        return render(request, "dashboard/explorer.html", ctx)
    if not form.is_valid():
        return render(request, "dashboard/explorer.html", ctx, status=400)
    q = Query.from_form(form)
    page, next_cursor = call_page(q, form.cleaned_data.get("cursor") or None)
    for call in page:
        call.environment_label = scope.environment_label(call.environment_id)  # type: ignore[attr-defined]
        key = scope.keys.get(call.provider_key_id or 0)
        call.key_masked = key.masked if key else ""  # type: ignore[attr-defined]
        call.token_name = scope.token_label(call.gateway_token_id)  # type: ignore[attr-defined]
    query = request.GET.copy()
    query.pop("cursor", None)
    ctx.update(q=q, calls=page, next_cursor=next_cursor, query=query.urlencode(),
               first_page=not form.cleaned_data.get("cursor"))  # fmt: skip
    return render(request, "dashboard/explorer.html", ctx)
