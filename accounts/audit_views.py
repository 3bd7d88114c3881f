"""The audit log of a project: every change to its keys, tokens, budgets and members,
filtered by action, actor and date range, 50 a page.

Every role of the project may read it (viewers included): events hold names, masked
keys and settings — nothing a viewer cannot already see on the project's pages, and
never a secret (accounts.audit.record's contract)."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.access import project_for_user
from accounts.models import AuditEvent, Project, User

PER_PAGE = 50


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(label=_("Action"), required=False)
    actor = forms.ChoiceField(label=_("Who"), required=False)
    start = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, project: Project, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", "audit-%s")
        super().__init__(*args, **kwargs)
        events = AuditEvent.objects.filter(project=project)
        actions = events.order_by("action").values_list("action", flat=True).distinct()
        self.fields["action"].choices = [("", _("All actions"))] + [(a, a) for a in actions]  # type: ignore[attr-defined]
        actor_ids = events.exclude(actor=None).values("actor_id").distinct()
        actors = User.objects.filter(pk__in=actor_ids).order_by("email")
        self.fields["actor"].choices = [("", _("Anyone"))] + [  # type: ignore[attr-defined]
            (str(u.pk), u.email) for u in actors
        ]

    def clean(self):
        cleaned = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            self.add_error("end", _("The end date is before the start date."))
        return cleaned


def _midnight(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _detail_items(detail: object) -> list[tuple[str, str]]:
    """(name, text) pairs; nested values (old/new budget settings) as compact JSON."""
    if not isinstance(detail, dict):
        return [("", json.dumps(detail, ensure_ascii=False))]
    return [
        (
            str(k),
            "—" if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False),
        )
        for k, v in detail.items()
    ]


@login_required
def audit_log(request: HttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug)  # type: ignore[arg-type]
    form = AuditFilterForm(project, request.GET or None)
    events = AuditEvent.objects.filter(project=project).select_related("actor")
    status = 200
    if form.is_bound and not form.is_valid():
        status = 400
        events = events.none()
    elif form.is_bound:
        data = form.cleaned_data
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["actor"]:
            events = events.filter(actor_id=int(data["actor"]))
        if data["start"]:
            events = events.filter(created_at__gte=_midnight(data["start"]))
        if data["end"]:
            events = events.filter(created_at__lt=_midnight(data["end"] + timedelta(days=1)))
    page = Paginator(events.order_by("-created_at", "-id"), PER_PAGE).get_page(
        request.GET.get("page")
    )
    for event in page.object_list:
        event.items = _detail_items(event.detail)  # type: ignore[attr-defined]
    # Page links keep the filters.
    query = request.GET.copy()
    query.pop("page", None)
    ctx = {
        "project": project,
        "role": role,
        "section": "audit",
        "form": form,
        "page": page,
        "query": query.urlencode(),
    }
    return render(request, "accounts/audit.html", ctx, status=status)
