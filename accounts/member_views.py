"""Members & roles of a project, invitations by email, and accepting an invitation.

Everyone in the project sees who is in it; admins change roles, remove members and
invite. The rules (last admin stays, single-use links) live in accounts.projects and
accounts.invitations."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import audit, invitations, projects
from accounts.access import can, project_for_user
from accounts.forms import ServiceErrorsMixin
from accounts.models import Invitation, Membership, Project, Role, User


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class InviteForm(ServiceErrorsMixin, forms.Form):
    auto_id_format = "invite-%s"
    error_fields = {"email": "email", "member": "email", "role": "role"}

    email = forms.EmailField(label=gettext_lazy("Email"), max_length=254)
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=Role.choices)


class SignupForm(ServiceErrorsMixin, forms.Form):
    """A new account for the invited address (the address itself is the invitation's)."""

    auto_id_format = "signup-%s"
    error_fields = {"password": "password1"}

    name = forms.CharField(label=gettext_lazy("Your name"), max_length=150, required=False)
    password1 = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=gettext_lazy("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, email: str, *args: Any, **kwargs: Any) -> None:
        self.email = email
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", _("The two passwords differ."))
        elif first:
            try:
                validate_password(first, User(email=self.email, name=cleaned.get("name", "")))
            except ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


def _members_page(
    request: AuthenticatedHttpRequest,
    project: Project,
    role: str,
    *,
    invite_form: InviteForm | None = None,
    status: int = 200,
) -> HttpResponse:
    is_admin = can(role, Role.ADMIN)
    members = (
        Membership.objects.filter(project=project).select_related("user").order_by("user__email")
    )
    pending = [i for i in project.invitations.select_related("invited_by") if i.is_pending()]
    ctx = {
        "project": project,
        "role": role,
        "is_admin": is_admin,
        "section": "members",
        "members": members,
        "roles": Role.choices,
        "invitations": pending if is_admin else [],
        "invite_form": invite_form or (InviteForm() if is_admin else None),
        "invitation_days": invitations.INVITATION_DAYS,
    }
    return render(request, "accounts/members.html", ctx, status=status)


@login_required
def member_list(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug)
    return _members_page(request, project, role)


def _member_of(project: Project, user_id: int) -> User:
    membership = get_object_or_404(
        Membership.objects.select_related("user"), project=project, user_id=user_id
    )
    return membership.user


@require_POST
@login_required
def set_role(request: AuthenticatedHttpRequest, slug: str, user_id: int) -> HttpResponse:
    project, _role = project_for_user(request.user, slug, Role.ADMIN)
    member = _member_of(project, user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a role."))
        return redirect("project:members", slug=project.slug)
    try:
        projects.set_member_role(
            project, member, form.cleaned_data["role"], by=request.user, ip=audit.client_ip(request)
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            _("%(email)s is now %(role)s.")
            % {"email": member.email, "role": Role(form.cleaned_data["role"]).label.lower()},
        )
    return redirect("project:members", slug=project.slug)


@require_POST
@login_required
def remove_member(request: AuthenticatedHttpRequest, slug: str, user_id: int) -> HttpResponse:
    project, _role = project_for_user(request.user, slug, Role.ADMIN)
    member = _member_of(project, user_id)
    try:
        projects.remove_member(project, member, by=request.user, ip=audit.client_ip(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("%(email)s was removed.") % {"email": member.email})
    if member == request.user and not request.user.is_staff:
        return redirect("dashboard:projects")  # they can no longer see the project
    return redirect("project:members", slug=project.slug)


@require_POST
@login_required
def invite(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    project, role = project_for_user(request.user, slug, Role.ADMIN)
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation, token = invitations.create_invitation(
                project,
                form.cleaned_data["email"],
                form.cleaned_data["role"],
                by=request.user,
                ip=audit.client_ip(request),
            )
        except ValidationError as exc:
            form.add_service_error(exc)
        else:
            if invitations.send_invitation(invitation, token):
                messages.success(
                    request, _("Invitation sent to %(email)s.") % {"email": invitation.email}
                )
            else:
                messages.warning(
                    request,
                    _(
                        "The invitation to %(email)s was saved, but the email could not be sent. "
                        "Check the mail settings, then use “Send again”."
                    )
                    % {"email": invitation.email},
                )
            return redirect("project:members", slug=project.slug)
    return _members_page(request, project, role, invite_form=form, status=400)


@require_POST
@login_required
def resend_invitation(
    request: AuthenticatedHttpRequest, slug: str, invitation_id: int
) -> HttpResponse:
    """A new link (the old one stops working), emailed again."""
    project, _role = project_for_user(request.user, slug, Role.ADMIN)
    invitation = get_object_or_404(Invitation, pk=invitation_id, project=project)
    try:
        fresh, token = invitations.create_invitation(
            project,
            invitation.email,
            invitation.role,
            by=request.user,
            ip=audit.client_ip(request),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if invitations.send_invitation(fresh, token):
            messages.success(request, _("Invitation sent to %(email)s.") % {"email": fresh.email})
        else:
            messages.warning(request, _("The email could not be sent. Try again later."))
    return redirect("project:members", slug=project.slug)


@require_POST
@login_required
def cancel_invitation(
    request: AuthenticatedHttpRequest, slug: str, invitation_id: int
) -> HttpResponse:
    project, _role = project_for_user(request.user, slug, Role.ADMIN)
    invitation = get_object_or_404(Invitation, pk=invitation_id, project=project)
    invitations.cancel_invitation(invitation, by=request.user, ip=audit.client_ip(request))
    messages.success(
        request, _("The invitation to %(email)s was cancelled.") % {"email": invitation.email}
    )
    return redirect("project:members", slug=project.slug)


# Accepting: /accounts/invite/<token>/ (no login needed: a new user has no account yet)


@never_cache
@sensitive_post_parameters("password1", "password2")
def accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitations.pending_invitation(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    user = request.user if request.user.is_authenticated else None
    account_exists = User.objects.filter(email__iexact=invitation.email).exists()
    signup = None
    if user is None and not account_exists:
        signup = SignupForm(invitation.email, request.POST if request.method == "POST" else None)
    ctx: dict[str, Any] = {
        "invitation": invitation,
        "project": invitation.project,
        "signup": signup,
        "account_exists": account_exists,
        "wrong_user": user is not None and user.email.lower() != invitation.email.lower(),
    }
    if request.method != "POST":
        return render(request, "accounts/invitation_accept.html", ctx)
    if user is None and signup is None:
        return render(request, "accounts/invitation_accept.html", ctx, status=400)
    if signup is not None and not signup.is_valid():
        return render(request, "accounts/invitation_accept.html", ctx, status=400)
    try:
        joined = invitations.accept_invitation(
            invitation,
            user=user,  # type: ignore[arg-type]
            password=signup.cleaned_data["password1"] if signup else None,
            name=signup.cleaned_data["name"] if signup else "",
            ip=audit.client_ip(request),
        )
    except ValidationError as exc:
        ctx["error"] = " ".join(exc.messages)
        return render(request, "accounts/invitation_accept.html", ctx, status=400)
    if user is None:
        login(request, joined, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, _("Welcome to %(project)s.") % {"project": invitation.project.name})
    return redirect("dashboard:project", slug=invitation.project.slug)
