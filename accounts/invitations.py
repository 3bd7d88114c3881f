"""Invitations by email: an admin invites an address with a role; whoever follows the
emailed link once, within INVITATION_DAYS, joins the project (creating an account if
the address has none). The link's token is stored as SHA-256 only."""

from __future__ import annotations

import logging
import secrets
import smtplib
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from accounts import audit
from accounts.mail import render_email
from accounts.models import Invitation, Membership, Project, Role, User
from accounts.projects import set_member_role
from accounts.tokens import digest

log = logging.getLogger(__name__)

INVITATION_DAYS = 7
TOKEN_PREFIX = "kmi_"




def invite_url(token: str) -> str:
    return f"{settings.SITE_URL}/accounts/invite/{token}/"


def create_invitation(
    project: Project, email: str, role: str, *, by: User | None, ip: str | None = None
) -> tuple[Invitation, str]:
    """A new invitation and its token (to email, never to store). A pending invitation
    to the same address is replaced, so only the newest link works."""
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError(_("Enter a valid email address."), code="email") from None
    try:
        role = Role(role)
    except ValueError:
        raise ValidationError(_("Choose a role."), code="role") from None
    if Membership.objects.filter(project=project, user__email__iexact=email).exists():
        raise ValidationError(
            _("%(email)s is already a member of this project.") % {"email": email}, code="member"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.filter(
            project=project, email=email, accepted_at__isnull=True, expires_at__gt=now
        ).update(expires_at=now)
        invitation = Invitation.objects.create(
            project=project,
            email=email,
            role=role,
            digest=digest(token),
            invited_by=by if by is not None and by.is_authenticated else None,
            created_at=now,
            expires_at=now + timedelta(days=INVITATION_DAYS),
        )
        audit.record(
            "member.invite",
            actor=by,
            project=project,
            target=invitation,
            ip=ip,
            email=email,
            role=role,
        )
    return invitation, token


@sensitive_variables("token")
def send_invitation(invitation: Invitation, token: str) -> bool:
    """Email the link; False (and a warning in the log) when the mail server fails."""
    ctx = {
        "invitation": invitation,
        "project": invitation.project,
        "inviter": invitation.invited_by,
        "url": invite_url(token),
        "days": INVITATION_DAYS,
    }
    # Sent during the inviting admin's request: in the language of that page.
    message = render_email("accounts/email/invitation", ctx, to=invitation.email,
                           language=translation.get_language() or settings.LANGUAGE_CODE)
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        # The exception text names the server, not the link.
        log.warning("could not send invitation %s: %s", invitation.pk, type(exc).__name__)
        return False
    return True


def pending_invitation(token: str) -> Invitation | None:
    """The invitation this link belongs to, if it can still be accepted."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    invitation = (
        Invitation.objects.select_related("project", "invited_by")
        .filter(digest=digest(token))
        .first()
    )
    return invitation if invitation is not None and invitation.is_pending() else None


def cancel_invitation(invitation: Invitation, *, by: User | None, ip: str | None = None) -> None:
    now = timezone.now()
    with transaction.atomic():
        changed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, expires_at__gt=now
        ).update(expires_at=now)
        if changed:
            audit.record(
                "member.uninvite",
                actor=by,
                project=invitation.project,
                target=invitation,
                ip=ip,
                email=invitation.email,
            )


@sensitive_variables("password")
def accept_invitation(
    invitation: Invitation,
    *,
    user: User | None = None,
    password: str | None = None,
    name: str = "",
    ip: str | None = None,
) -> User:
    """Join the project. `user` (logged in, with the invited address) joins as is; without
    one, a new account is made for the invited address with `password`. Works once."""
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not locked.is_pending():
            raise ValidationError(
                _("This invitation was already used or has expired."), code="used"
            )
        if user is None:
            if User.objects.filter(email__iexact=locked.email).exists():
                raise ValidationError(
                    _("An account with this email exists: log in first."), code="exists"
                )
            if not password:
                raise ValidationError(_("Choose a password."), code="password")
            user = User.objects.create_user(locked.email, password, name=name.strip()[:150])
            audit.record(
                "user.create",
                actor=user,
                project=locked.project,
                target=user,
                ip=ip,
                email=user.email,
                via="invitation",
            )
        elif user.email.lower() != locked.email.lower():
            raise ValidationError(
                _("This invitation is for %(email)s; you are logged in as another user.")
                % {"email": locked.email},
                code="other_user",
            )
        # Someone who is already a member keeps their role: a stale invitation must
        # never demote an admin.
        if not Membership.objects.filter(project=locked.project, user=user).exists():
            set_member_role(locked.project, user, locked.role, by=user, ip=ip)
        locked.accepted_at = timezone.now()
        locked.accepted_by = user
        locked.save(update_fields=["accepted_at", "accepted_by"])
        audit.record(
            "member.accept",
            actor=user,
            project=locked.project,
            target=locked,
            ip=ip,
            email=user.email,
            role=locked.role,
        )
    return user
