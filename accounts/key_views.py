"""Key tools of a project: import an existing key with the date it was issued,
validate a key now, and the leak-scan paste box.

Rules live in accounts.keys (add_provider_key), accounts.validation (validate_key)
and accounts.leaks (scan_pasted_text). Pasted text and secrets are never rendered
back: the forms use PasswordInput / an always-empty textarea, and findings carry
only prefix…last4 and line numbers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from accounts import audit, hygiene, leaks, validation
from accounts.access import can, project_for_user
from accounts.models import Project, ProviderKey, Role, RotationStage, User
from dashboard.forms import ProviderKeyForm

MAX_PASTE_CHARS = 1_000_000


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class ImportKeyForm(ProviderKeyForm):
    """The add-key form, for a key that already exists at the provider: its issue date
    is required (rotation reminders count from it), and it may be an Admin key."""

    auto_id_format = "import-%s"

    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"), choices=ProviderKey.Kind.choices, initial=ProviderKey.Kind.API
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["issued_at"].required = True
        self.fields["issued_at"].help_text = gettext_lazy(
            "The day the provider issued the key. Its age and rotation stage count from it."
        )


class PasteForm(forms.Form):
    text = forms.CharField(
        label=gettext_lazy("Text to scan"),
        max_length=MAX_PASTE_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "autocomplete": "off"}),
        help_text=gettext_lazy(
            "Paste a log, a config file or a chat message. keymeter looks for OpenAI keys, "
            "shows only their first and last characters, and flags this project’s keys "
            "found there as leaked. The text is not stored."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "scan-%s")
        super().__init__(*args, **kwargs)


def _tools_page(
    request: AuthenticatedHttpRequest,
    project: Project,
    role: str,
    *,
    status: int = 200,
    import_form: ImportKeyForm | None = None,
    findings: list[dict[str, Any]] | None = None,
    paste_errors: list[str] | None = None,
) -> HttpResponse:
    is_admin = can(role, Role.ADMIN)
    project_keys = list(
        project.provider_keys.select_related("environment", "project").order_by(
            "status", "environment__name", "-created_at"
        )
    )
    rows = {row["id"]: row for row in hygiene.key_hygiene(project_keys)}
    for key in project_keys:
        key.hygiene = rows[key.pk]  # type: ignore[attr-defined]
    ctx = {
        "project": project,
        "role": role,
        "is_admin": is_admin,
        "is_member": can(role, Role.MEMBER),
        "section": "keys",
        "provider_keys": project_keys,
        "import_form": import_form or (ImportKeyForm(project) if is_admin else None),
        # Always a fresh form: what was pasted is never put back into the page.
        "paste_form": PasteForm(),
        "paste_errors": paste_errors or [],
        "findings": findings,
    }
    return render(request, "accounts/keys_tools.html", ctx, status=status)


@never_cache
@login_required
def key_tools(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug)
    return _tools_page(request, project, role)


@sensitive_post_parameters("secret")
@require_POST
@login_required
def import_key(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.ADMIN)
    form = ImportKeyForm(project, request.POST)
    if form.is_valid():
        try:
            key = form.add_key(by=request.user, ip=audit.client_ip(request))
        except ValidationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(
                request,
                _("Key %(key)s imported: %(days)s days old, rotation stage: %(stage)s.")
                % {
                    "key": key.masked,
                    "days": key.age_days(),
                    "stage": RotationStage(key.rotation_stage()).label,
                },
            )
            return redirect("project:key_tools", slug=project.slug)
    return _tools_page(request, project, role, status=400, import_form=form)


@require_POST
@login_required
def validate_key(request: AuthenticatedHttpRequest, slug: str, key_id: int) -> HttpResponse:
    project, _role = project_for_user(request.user, slug, Role.ADMIN)
    key = get_object_or_404(
        ProviderKey.objects.select_related("project"), pk=key_id, project=project
    )
    result = validation.validate_key(key, by=request.user, ip=audit.client_ip(request))
    text = {
        validation.VALID: _("%(key)s is valid: the provider accepts it."),
        validation.INVALID: _(
            "%(key)s is invalid: the provider rejects it (HTTP %(code)s). "
            "The project’s admins are emailed."
        ),
        validation.UNKNOWN: _(
            "Could not tell whether %(key)s works (%(detail)s); "
            "nothing was changed. Try again later."
        ),
    }[result.result] % {"key": key.masked, "code": result.status_code, "detail": result.detail}
    level = {validation.VALID: messages.SUCCESS, validation.INVALID: messages.ERROR}
    messages.add_message(request, level.get(result.result, messages.WARNING), text)
    return redirect("project:key_tools", slug=project.slug)


@never_cache
@sensitive_post_parameters("text")
@sensitive_variables("text")
@require_POST
@login_required
def leak_scan(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.MEMBER)
    form = PasteForm(request.POST)
    if not form.is_valid():
        errors = [str(e) for e in form.errors.get("text", [])]
        return _tools_page(request, project, role, status=400, paste_errors=errors)
    text = form.cleaned_data["text"]
    found = leaks.scan_pasted_text(text, by=request.user, ip=audit.client_ip(request))
    del text
    visible = set(Project.visible_to(request.user).values_list("pk", flat=True))
    stored = {
        k.pk: k
        for k in ProviderKey.objects.filter(
            pk__in={i for f in found for i in f.stored_key_ids}, project_id__in=visible
        ).select_related("project", "environment")
    }
    # Another project's key is flagged too (it did leak), but only keys the user may
    # see are named here.
    findings = [
        {
            "line": f.line,
            "masked": f.masked,
            "keys": [stored[i] for i in f.stored_key_ids if i in stored],
        }
        for f in found
    ]
    return _tools_page(request, project, role, findings=findings)
