"""Access control in one place: every view and API endpoint looks projects up here."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.models import ROLE_RANK, GatewayToken, Membership, Project, Role, User


def project_for_user(user: User, slug: str, role: str = Role.VIEWER) -> tuple[Project, str]:
    """The project and the user's role in it.

    Raises Http404 when the user cannot see the project (so its existence does not
    leak) and PermissionDenied when they can see it but their role is below `role`.
    """
    project = Project.objects.filter(slug=slug).first()
    user_role = project.role_of(user) if project else None
    if project is None or user_role is None:
        raise Http404("No such project")
    if ROLE_RANK[Role(user_role)] < ROLE_RANK[Role(role)]:
        raise PermissionDenied(f"This needs the {Role(role).label.lower()} role in {project.name}.")
    return project, user_role


def can(user_role: str | None, role: str) -> bool:
    return user_role is not None and ROLE_RANK[Role(user_role)] >= ROLE_RANK[Role(role)]


def roles_by_project(user: User, projects: Iterable[Project]) -> dict[int, str | None]:
    """The user's role in each project, in one query (staff are admins everywhere)."""
    if user.is_staff:
        return {p.pk: Role.ADMIN for p in projects}
    roles = dict(Membership.objects.filter(user=user).values_list("project_id", "role"))
    return {p.pk: roles.get(p.pk) for p in projects}


def can_revoke_gateway_token(user: User, user_role: str | None, token: GatewayToken) -> bool:
    """Admins revoke any token of their project; members only the ones they created."""
    if can(user_role, Role.ADMIN):
        return True
    return can(user_role, Role.MEMBER) and token.created_by_id == user.pk
