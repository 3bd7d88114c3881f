"""Creating projects and environments and managing members."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from accounts import audit
from accounts.models import Environment, Membership, Project, Role, User

DEFAULT_ENVIRONMENTS = ("production", "staging", "dev")


def create_project(
    name: str,
    slug: str = "",
    *,
    owner: User,
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS,
    ip: str | None = None,
) -> Project:
    """Create a project with its environments; the owner becomes its admin."""
    name = name.strip()
    given = slug.strip()
    slug = slugify(given or name)
    max_slug = Project._meta.get_field("slug").max_length or 50
    if len(slug) > max_slug:
        if given:
            raise ValidationError(f"A slug can have at most {max_slug} characters.", code="slug")
        slug = slug[:max_slug].rstrip("-_")  # made from a long name: cut, don't fail
    if not name:
        raise ValidationError("A project needs a name.", code="name")
    if not slug:
        raise ValidationError("A project needs a slug of letters, digits or dashes.", code="slug")
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name, slug=slug)
            Membership.objects.create(user=owner, project=project, role=Role.ADMIN)
            for env_name in environments:
                Environment.objects.create(project=project, name=env_name)
            audit.record("project.create", actor=owner, project=project, target=project, ip=ip,
                         slug=slug)
            audit.record("member.add", actor=owner, project=project, ip=ip, email=owner.email,
                         role=Role.ADMIN)
    except IntegrityError:
        raise ValidationError(f"The slug '{slug}' is taken.", code="slug_taken") from None
    return project


def add_environment(project: Project, name: str, *, by: User | None = None,
                    ip: str | None = None) -> Environment:
    slug = slugify(name.strip())
    if not slug:
        raise ValidationError("An environment needs a name of letters, digits or dashes.",
                              code="name")
    if len(slug) > Environment._meta.get_field("name").max_length:
        raise ValidationError("An environment name can have at most 40 characters.", code="name")
    try:
        with transaction.atomic():
            environment = Environment.objects.create(project=project, name=slug)
            audit.record("environment.create", actor=by, project=project, target=environment,
                         ip=ip, name=slug)
    except IntegrityError:
        raise ValidationError(f"Environment '{slug}' already exists.", code="exists") from None
    return environment


def set_member_role(project: Project, user: User, role: str, *, by: User | None = None,
                    ip: str | None = None) -> Membership:
    role = Role(role)
    with transaction.atomic():
        membership, created = Membership.objects.select_for_update().get_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if created:
            audit.record("member.add", actor=by, project=project, ip=ip, email=user.email,
                         role=role)
        elif membership.role != role:
            old = membership.role
            _ensure_an_admin_remains(project, membership, new_role=role)
            membership.role = role
            membership.save(update_fields=["role"])
            audit.record("member.role", actor=by, project=project, ip=ip, email=user.email,
                         old_role=old, role=role)
    return membership


def remove_member(project: Project, user: User, *, by: User | None = None,
                  ip: str | None = None) -> None:
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update().filter(project=project, user=user).first()
        )
        if membership is None:
            return
        _ensure_an_admin_remains(project, membership, new_role=None)
        membership.delete()
        audit.record("member.remove", actor=by, project=project, ip=ip, email=user.email)


def _ensure_an_admin_remains(project: Project, membership: Membership,
                             new_role: str | None) -> None:
    if membership.role != Role.ADMIN or new_role == Role.ADMIN:
        return
    others = project.memberships.filter(role=Role.ADMIN).exclude(pk=membership.pk).exists()
    if not others:
        raise ValidationError("A project must keep at least one admin.", code="last_admin")
