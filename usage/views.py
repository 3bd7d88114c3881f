"""Usage pages: a project's budget (admins edit, everyone else reads) and its alert
history, the global price table (staff edit: prices are shared by every project) and
the cost calculator. Rules stay in usage.budgets / usage.budget_fields / usage.pricing."""

from __future__ import annotations

from datetime import timedelta
from itertools import groupby
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import audit
from accounts.access import can, project_for_user
from accounts.models import Project, Role, User
from usage import budgets, pricing
from usage.budget_fields import budget_summary
from usage.forms import BudgetForm, CalculatorForm, PriceForm
from usage.models import Budget, BudgetAlert, HealthAlert, ModelPrice
from usage.rollups import money_str

UNPRICED_SINCE = timedelta(days=30)
DAYS_PER_MONTH = 30  # the calculator's month, as in the worked example
ALERTS_PER_PAGE = 50


class AuthenticatedHttpRequest(HttpRequest):
    user: User


# Budget


def _budget_form_initial(budget: Budget | None) -> dict[str, Any]:
    if budget is None:
        return {"thresholds": "80, 100", "notify_admins": True}
    return {
        "environment": budget.environment_name or "",
        "monthly_limit_usd": budget.monthly_limit_usd,
        "thresholds": ", ".join(str(t) for t in budget.thresholds),
        "recipients": "\n".join(budget.extra_recipients),
        "notify_admins": budget.notify_admins,
        "hard_limit": budget.hard_limit,
    }


def _budget_page(
    request: AuthenticatedHttpRequest,
    project: Project,
    role: str,
    *,
    form: BudgetForm | None = None,
    status: int = 200,
) -> HttpResponse:
    is_admin = can(role, Role.ADMIN)
    project_budgets = list(
        Budget.objects.filter(project=project)
        .select_related("project", "environment")
        .order_by("environment__name")
    )
    summaries = [(b, budget_summary(b)) for b in project_budgets]
    if is_admin and form is None:
        wanted = request.GET.get("environment", "")
        editing = next((b for b in project_budgets if (b.environment_name or "") == wanted), None)
        initial = _budget_form_initial(editing) | {"environment": wanted}
        form = BudgetForm(project, initial=initial)
    ctx = {
        "project": project,
        "role": role,
        "is_admin": is_admin,
        "section": "budget",
        "summaries": summaries,
        "form": form if is_admin else None,
    }
    return render(request, "usage/budget.html", ctx, status=status)


@login_required
def budget(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    if request.method != "POST":
        project, role = project_for_user(request.user, slug)
        return _budget_page(request, project, role)
    project, role = project_for_user(request.user, slug, Role.ADMIN)
    form = BudgetForm(project, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            environment = budgets.environment_named(project, data["environment"])
            saved = budgets.set_budget(
                project,
                environment=environment,
                monthly_limit_usd=data["monthly_limit_usd"],
                thresholds=data["thresholds"],
                hard_limit=data["hard_limit"],
                extra_recipients=data["recipients"],
                notify_admins=data["notify_admins"],
                webhook_url=None,  # set through the API and never shown: keep it
                by=request.user,
                ip=audit.client_ip(request),
            )
        except ValidationError as exc:
            form.add_error("hard_limit" if data["hard_limit"] else None, exc)
        else:
            messages.success(
                request,
                _("Budget saved: %(limit)s USD a month.") % {"limit": saved.monthly_limit_usd},
            )
            return redirect("usage:budget", slug=project.slug)
    return _budget_page(request, project, role, form=form, status=400)


@require_POST
@login_required
def remove_budget(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, _role = project_for_user(request.user, slug, Role.ADMIN)
    try:
        target = budgets.budget_for(project, request.POST.get("environment") or None)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        budgets.remove_budget(target, by=request.user, ip=audit.client_ip(request))
        messages.success(request, _("Budget removed."))
    return redirect("usage:budget", slug=project.slug)


# Alerts


def _alert_rows(project: Project) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for a in BudgetAlert.objects.filter(budget__project=project).select_related(
        "budget__environment"
    ):
        what = (
            _("%(n)s%% of the budget") % {"n": a.threshold}
            if a.kind == BudgetAlert.Kind.THRESHOLD
            else _("forecast over budget")
        )
        rows.append(
            {
                "at": a.created_at,
                "type": _("Budget"),
                "what": what,
                "scope": a.budget.environment_name,
                "spend": money_str(a.spend_usd),
                "limit": a.limit_usd,
                "alert": a,
            }
        )
    for h in HealthAlert.objects.filter(project=project):
        rows.append(
            {
                "at": h.opened_at,
                "type": _("Health"),
                "what": h.get_kind_display(),
                "scope": h.episode_key,
                "closed_at": h.closed_at,
                "alert": h,
                "health": True,
            }
        )
    rows.sort(key=lambda r: r["at"], reverse=True)
    return rows


@login_required
def alerts(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug)
    page = Paginator(_alert_rows(project), ALERTS_PER_PAGE).get_page(request.GET.get("page"))
    ctx = {"project": project, "role": role, "section": "alerts", "page": page}
    return render(request, "usage/alerts.html", ctx)


# Prices (global: every logged-in user reads them, staff change them)


def _shown(row: ModelPrice | None) -> dict[str, str | None]:
    """Each price as "$0.15"-style text (at least cents, never float), None if unset."""
    if row is None:
        return {}
    return {
        f: None if getattr(row, f) is None else f"${money_str(getattr(row, f))}"
        for f in pricing.PRICE_FIELDS
    }


def _price_table(rows: list[ModelPrice], now) -> list[dict[str, Any]]:
    table = []
    for model, group in groupby(
        sorted(rows, key=lambda r: (r.model, r.effective_from)), key=lambda r: r.model
    ):
        history = list(group)
        current = next((r for r in reversed(history) if r.effective_from <= now), None)
        upcoming = [r for r in history if r.effective_from > now]
        table.append(
            {
                "model": model,
                "current": current,
                "shown": _shown(current),
                "upcoming": [(r, _shown(r)) for r in upcoming],
                "history": [(r, _shown(r)) for r in reversed(history)],
            }
        )
    return table


@login_required
def prices(request: AuthenticatedHttpRequest) -> HttpResponse:
    is_staff = request.user.is_staff
    form = None
    if request.method == "POST":
        if not is_staff:
            raise PermissionDenied(_("Prices apply to every project: only staff can change them."))
        form = PriceForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                row = pricing.set_price(
                    data["model"],
                    data["effective_from"],
                    by=request.user,
                    match_pattern=data["match_pattern"] or None,
                    ip=audit.client_ip(request),
                    **form.prices(),
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(
                    request,
                    _("Price for %(model)s saved, effective %(when)s.")
                    % {
                        "model": row.model,
                        "when": row.effective_from.strftime("%Y-%m-%d %H:%M UTC"),
                    },
                )
                return redirect("usage:prices")
    elif is_staff:
        form = PriceForm(initial={"model": request.GET.get("model", "")[:100]})
    now = timezone.now()
    ctx = {
        "table": _price_table(list(ModelPrice.objects.all()), now),
        "unpriced": pricing.unpriced_models(now - UNPRICED_SINCE),
        "form": form,
        "is_staff": is_staff,
        "prefill": bool(request.GET.get("model")),
    }
    return render(request, "usage/prices.html", ctx, status=400 if form and form.errors else 200)


# Calculator


def _priced_models(book: pricing.PriceBook, rows: list[ModelPrice], now) -> list[str]:
    return sorted({r.model for r in rows if book.exact_price(r.model, now) is not None})


@login_required
def calculator(request: HttpRequest) -> HttpResponse:
    rows = list(ModelPrice.objects.all())
    book, now = pricing.PriceBook(rows), timezone.now()
    form = CalculatorForm(
        _priced_models(book, rows, now), request.GET if "model" in request.GET else None
    )
    result = None
    if form.is_bound and form.is_valid():
        d = form.cleaned_data
        n = d["requests_per_day"]
        # A day's tokens costed at once: exact, with no per-request rounding multiplied.
        daily = book.cost(
            d["model"],
            now,
            input_tokens=n * d["input_tokens"],
            cached_input_tokens=n * d["cached_input_tokens"],
            output_tokens=n * d["output_tokens"],
        )
        per_request = book.cost(
            d["model"],
            now,
            input_tokens=d["input_tokens"],
            cached_input_tokens=d["cached_input_tokens"],
            output_tokens=d["output_tokens"],
        )
        if daily is None or per_request is None:
            form.add_error("model", _("This model has no price for these kinds of tokens."))
        else:
            price = book.price_for(d["model"], now)
            result = {
                "daily": money_str(daily),
                "monthly": money_str(daily * DAYS_PER_MONTH),
                "per_request": money_str(per_request),
                "price": price,
                "days": DAYS_PER_MONTH,
            }
    status = 400 if form.is_bound and form.errors else 200
    ctx = {"form": form, "result": result}
    return render(request, "usage/calculator.html", ctx, status=status)
