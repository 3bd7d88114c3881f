"""The project pages: list/create projects, and one page per project with its
environments, provider keys and gateway tokens. Every lookup goes through
accounts.access.project_for_user; every change through the accounts services."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, F, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import audit, keys, projects, tokens
from accounts.access import can, can_revoke_gateway_token, project_for_user, roles_by_project
from accounts.hygiene import key_hygiene
from accounts.models import GatewayToken, Project, ProviderKey, Role, User
from dashboard import charts
from dashboard.forms import (
    EnvironmentForm,
    GatewayTokenForm,
    ProjectForm,
    ProviderKeyForm,
    RotateKeyForm,
)
from dashboard.overview import RANGES, chosen_range

_STATUS_ORDER: dict[str, int] = {ProviderKey.Status.ACTIVE: 0, ProviderKey.Status.RETIRING: 1}


class AuthenticatedHttpRequest(HttpRequest):
    user: User  # every view here is behind login_required


@login_required
def project_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            project = projects.create_project(
                form.cleaned_data["name"],
                form.cleaned_data["slug"],
                owner=request.user,
                ip=audit.client_ip(request),
            )
        except ValidationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(request, _("Project “%(name)s” created.") % {"name": project.name})
            return redirect("dashboard:project", slug=project.slug)

    visible = Project.visible_to(request.user).annotate(
        environment_count=Count("environments", distinct=True),
        active_key_count=Count(
            "provider_keys", filter=Q(provider_keys__status="active"), distinct=True
        ),
    )
    visible = list(visible)
    roles = roles_by_project(request.user, visible)
    rows = [(p, roles[p.pk]) for p in visible]
    status = 400 if form.is_bound else 200
    return render(request, "dashboard/projects.html", {"rows": rows, "form": form}, status=status)


def _project_page(
    request: AuthenticatedHttpRequest,
    project: Project,
    role: str,
    *,
    status: int = 200,
    **bound: Any,
) -> HttpResponse:
    """Render the project page; `bound` holds a form that failed, to show its errors."""
    is_admin, is_member = can(role, Role.ADMIN), can(role, Role.MEMBER)
    provider_keys = sorted(
        project.provider_keys.select_related("environment"),
        key=lambda k: (
            _STATUS_ORDER.get(k.status, 2),
            k.environment.name,
            -k.created_at.timestamp(),
        ),
    )
    gateway_tokens = list(
        project.gateway_tokens.select_related("environment").order_by(
            F("revoked_at").asc(nulls_first=True), "-created_at"
        )
    )
    hygiene = {row["id"]: row for row in key_hygiene(provider_keys)}
    for key in provider_keys:
        key.hygiene = hygiene[key.pk]  # type: ignore[attr-defined]
    for token in gateway_tokens:
        token.can_revoke = token.is_active and can_revoke_gateway_token(  # type: ignore[attr-defined]
            request.user, role, token
        )
    ctx = {
        "project": project,
        "role": role,
        "is_admin": is_admin,
        "is_member": is_member,
        "environments": project.environments.all(),
        "provider_keys": provider_keys,
        "gateway_tokens": gateway_tokens,
        "environment_form": bound.get("environment_form")
        or (EnvironmentForm() if is_admin else None),
        "key_form": bound.get("key_form") or (ProviderKeyForm(project) if is_admin else None),
        "token_form": bound.get("token_form") or (GatewayTokenForm(project) if is_member else None),
        "rotate_form": bound.get("rotate_form"),
        "rotate_key_id": bound.get("rotate_key_id"),
        "rotation_grace_hours": keys.rotation_grace().total_seconds() / 3600,
        **_usage_context(request, project),
    }
    return render(request, "dashboard/project.html", ctx, status=status)


def _usage_context(request: HttpRequest, project: Project) -> dict[str, Any]:
    """Charts and tables of the project's spend, models and health, from the rollups."""
    now = timezone.now()
    days, first, last = chosen_range(request, now)
    ctx: dict[str, Any] = {"days": days, "ranges": RANGES, "site_url": settings.SITE_URL}
    if not charts.has_usage([project.pk]):
        return ctx
    month = charts.month_to_date([project], now)[0]
    statuses = ([month["budget"]] if month["budget"] else []) + month["environment_budgets"]
    return {
        **ctx,
        "has_usage": True,
        "budgets": [(s, s.chart(), f"gauge-{i}") for i, s in enumerate(statuses)],
        "month": month,
        "env_chart": charts.spend_by_environment(project, first, last),
        "models": charts.top_models([project.pk], first, last, n=None),
        "health": charts.health(project, now=now),
    }


@login_required
def project_detail(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug)
    return _project_page(request, project, role)


@require_POST
@login_required
def add_environment(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.ADMIN)
    form = EnvironmentForm(request.POST)
    if form.is_valid():
        try:
            env = projects.add_environment(
                project, form.cleaned_data["name"], by=request.user, ip=audit.client_ip(request)
            )
        except ValidationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(request, _("Environment “%(name)s” added.") % {"name": env.name})
            return redirect("dashboard:project", slug=project.slug)
    return _project_page(request, project, role, status=400, environment_form=form)


@sensitive_post_parameters("secret")
@require_POST
@login_required
def add_key(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.ADMIN)
    form = ProviderKeyForm(project, request.POST)
    if form.is_valid():
        try:
            key = form.add_key(by=request.user, ip=audit.client_ip(request))
        except ValidationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(request, _("Key %(key)s added.") % {"key": key.masked})
            return redirect("dashboard:project", slug=project.slug)
    return _project_page(request, project, role, status=400, key_form=form)


@sensitive_post_parameters("secret")
@require_POST
@login_required
def rotate_key(request: AuthenticatedHttpRequest, slug: str, key_id: int) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.ADMIN)
    key = get_object_or_404(ProviderKey, pk=key_id, project=project)
    form = RotateKeyForm(request.POST, auto_id=f"rotate-{key.pk}-%s")
    if form.is_valid():
        try:
            new = keys.rotate_key(
                key, form.cleaned_data["secret"], by=request.user, ip=audit.client_ip(request)
            )
        except ValidationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(
                request,
                _("Rotated: %(new)s is now active; %(old)s keeps working until %(until)s.")
                % {
                    "new": new.masked,
                    "old": key.masked,
                    "until": date_format(localtime(key.retiring_until), "DATETIME_FORMAT"),
                },
            )
            return redirect("dashboard:project", slug=project.slug)
    return _project_page(request, project, role, status=400, rotate_form=form, rotate_key_id=key.pk)


@require_POST
@login_required
def revoke_key(request: AuthenticatedHttpRequest, slug: str, key_id: int) -> HttpResponse:
    project, _role = project_for_user(request.user, slug, Role.ADMIN)
    key = get_object_or_404(ProviderKey, pk=key_id, project=project)
    keys.revoke_key(key, by=request.user, ip=audit.client_ip(request))
    messages.success(request, _("Key %(key)s revoked.") % {"key": key.masked})
    return redirect("dashboard:project", slug=project.slug)


@never_cache
@require_POST
@login_required
def create_token(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.MEMBER)
    form = GatewayTokenForm(project, request.POST)
    if not form.is_valid():
        return _project_page(request, project, role, status=400, token_form=form)
    token, plaintext = tokens.create_gateway_token(
        form.cleaned_data["environment"],
        form.cleaned_data["name"],
        by=request.user,
        ip=audit.client_ip(request),
    )
    # Rendered in this response only (never stored, never logged): a reload of the
    # project page cannot show it again.
    ctx = {
        "project": project,
        "token": token,
        "plaintext": plaintext,
        "site_url": settings.SITE_URL,
    }
    return render(request, "dashboard/token_created.html", ctx)


@require_POST
@login_required
def revoke_token(request: AuthenticatedHttpRequest, slug: str, token_id: int) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.MEMBER)
    token = get_object_or_404(GatewayToken, pk=token_id, project=project)
    if not can_revoke_gateway_token(request.user, role, token):
        raise PermissionDenied(_("Only an admin or the token's creator can revoke it."))
    tokens.revoke_gateway_token(token, by=request.user, ip=audit.client_ip(request))
    messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("dashboard:project", slug=project.slug)
