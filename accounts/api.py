"""JSON API for projects, environments, provider keys and gateway tokens.

Mounted at /api/v1/ by dashboard/api.py, which authenticates the kmu_ token and
turns ValidationError/PermissionDenied/Http404 into 400/403/404. Every endpoint
looks its project up with access.project_for_user and leaves the rules to the
service functions in projects.py, keys.py and tokens.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import URLValidator
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.text import slugify
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import AfterValidator, field_validator

from accounts import keys, projects, tokens
from accounts.access import can_revoke_gateway_token, project_for_user, roles_by_project
from accounts.audit import client_ip
from accounts.models import Environment, Project, ProviderKey, Role, User

router = Router(tags=["projects"])

# Service errors that mean "the request clashes with what exists" rather than "bad input".
CONFLICT_CODES = {"active_key_exists", "slug_taken", "exists", "revoked", "not_active"}

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_SLUG_CHARS = re.compile(r"[-a-zA-Z0-9_]+")


def _no_control_chars(value: str) -> str:
    # Postgres rejects NUL bytes with an exception, so refuse them here as bad input.
    if _CONTROL_CHARS.search(value):
        raise ValueError("must not contain control characters")
    return value


_Clean = AfterValidator(_no_control_chars)
Name = Annotated[str, Field(max_length=100), _Clean]
Slug = Annotated[str, Field(max_length=50), _Clean]
EnvName = Annotated[str, Field(max_length=40), _Clean]
Url = Annotated[str, Field(max_length=200), _Clean]
# Shape is checked by vault.clean_secret, whose message never repeats the secret.
Secret = Annotated[str, Field(json_schema_extra={"format": "password", "writeOnly": True})]


# ---- schemas ---------------------------------------------------------------------------


class ErrorOut(Schema):
    detail: str


class FieldErrorOut(Schema):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(Schema):
    detail: list[FieldErrorOut]


class EnvironmentOut(Schema):
    name: str
    created_at: datetime


class ProjectOut(Schema):
    name: str
    slug: str
    role: str
    created_at: datetime
    environments: list[EnvironmentOut]


class ProjectIn(Schema):
    name: Name
    slug: Slug = Field("", description="lowercase letters, digits, - or _; from name if empty")

    @field_validator("slug")
    @classmethod
    def _slug_as_stored(cls, value: str) -> str:
        value = value.strip()
        if value and slugify(value) != value:
            raise ValueError("slug may only hold lowercase letters, digits, '-' and '_'")
        return value


class EnvironmentIn(Schema):
    name: EnvName


class KeyOut(Schema):
    id: int
    name: str
    environment: str = Field(..., alias="environment.name")
    provider: str
    kind: str
    base_url: str
    prefix: str
    last4: str
    masked: str
    status: str
    issued_at: datetime
    age_days: int
    last_used_at: datetime | None
    retiring_until: datetime | None
    created_at: datetime

    @staticmethod
    def resolve_age_days(key: ProviderKey) -> int:
        return key.age_days()


class KeyIn(Schema):
    environment: EnvName
    name: Name = ""
    secret: Secret
    base_url: Url = ""
    issued_at: datetime | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                URLValidator(schemes=["http", "https"])(value)
            except ValidationError:
                raise ValueError("base_url must be an http:// or https:// URL") from None
        return value

    @field_validator("issued_at")
    @classmethod
    def _aware_and_plausible(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if timezone.is_naive(value):
            value = value.replace(tzinfo=timezone.get_current_timezone())
        if value.year < 2000:
            raise ValueError("issued_at is not a plausible date for an API key")
        return value


class RotateIn(Schema):
    secret: Secret


class TokenOut(Schema):
    id: int
    name: str
    environment: str = Field(..., alias="environment.name")
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenIn(Schema):
    environment: EnvName
    name: Name = ""


class NewTokenOut(Schema):
    id: int
    name: str
    environment: str
    prefix: str
    created_at: datetime
    token: str = Field(..., description="the km_… token; shown only this once")


# Every endpoint that takes a project can answer these.
_ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut}
_WRITE_ERRORS = {**_ERRORS, 400: ErrorOut, 409: ErrorOut, 422: ValidationErrorOut}


# ---- helpers ---------------------------------------------------------------------------


def _user(request: HttpRequest) -> User:
    """The kmu_ token's owner, set by dashboard.api.ApiTokenAuth."""
    return request.auth  # type: ignore[attr-defined]


def _project(request: HttpRequest, slug: str, role: str = Role.VIEWER) -> tuple[Project, str]:
    # A path like /projects/%00 would otherwise reach the database as a NUL byte.
    if not _SLUG_CHARS.fullmatch(slug):
        raise Http404("No such project")
    return project_for_user(_user(request), slug, role)


def _environment(project: Project, name: str) -> Environment:
    environment = project.environments.filter(name=name.strip()).first()
    if environment is None:
        known = ", ".join(project.environments.values_list("name", flat=True)) or "none"
        raise ValidationError(
            f"Unknown environment '{name.strip()}' in {project.slug}; known: {known}."
        )
    return environment


def _key(project: Project, key_id: int) -> ProviderKey:
    key = project.provider_keys.select_related("environment").filter(pk=key_id).first()
    if key is None:
        raise Http404("No such key")
    return key


def _service_error(exc: ValidationError) -> Exception:
    """409 for a clash with existing state; other service errors stay 400."""
    if getattr(exc, "code", None) in CONFLICT_CODES:
        return HttpError(409, " ".join(exc.messages))
    return exc


def _project_out(project: Project, role: str | None) -> dict:
    return {
        "name": project.name,
        "slug": project.slug,
        "role": role,
        "created_at": project.created_at,
        "environments": list(project.environments.all()),
    }


# ---- projects and environments ---------------------------------------------------------


@router.get("/projects", response={200: list[ProjectOut], 401: ErrorOut})
def list_projects(request: HttpRequest):
    """The projects the caller belongs to (staff: all), with the caller's role."""
    user = _user(request)
    visible = list(Project.visible_to(user).prefetch_related("environments"))
    roles = roles_by_project(user, visible)
    return [_project_out(p, roles[p.pk]) for p in visible]


@router.post("/projects", response={201: ProjectOut, **_WRITE_ERRORS})
def create_project(request: HttpRequest, data: ProjectIn):
    """Create a project with environments production, staging and dev; the caller is admin."""
    try:
        project = projects.create_project(
            data.name, data.slug, owner=_user(request), ip=client_ip(request)
        )
    except ValidationError as exc:
        raise _service_error(exc) from None
    return Status(201, _project_out(project, Role.ADMIN))


@router.get("/projects/{slug}", response={200: ProjectOut, **_ERRORS})
def get_project(request: HttpRequest, slug: str):
    project, role = _project(request, slug)
    return _project_out(project, role)


@router.post("/projects/{slug}/environments", response={201: EnvironmentOut, **_WRITE_ERRORS})
def create_environment(request: HttpRequest, slug: str, data: EnvironmentIn):
    """Add an environment (admin)."""
    project, _ = _project(request, slug, Role.ADMIN)
    try:
        environment = projects.add_environment(
            project, data.name, by=_user(request), ip=client_ip(request)
        )
    except ValidationError as exc:
        raise _service_error(exc) from None
    return Status(201, environment)


# ---- provider keys ---------------------------------------------------------------------


@router.get("/projects/{slug}/keys", response={200: list[KeyOut], **_ERRORS}, tags=["keys"])
def list_keys(request: HttpRequest, slug: str):
    """Every provider key of the project, masked. The secret is never returned."""
    project, _ = _project(request, slug)
    return project.provider_keys.select_related("environment")


@router.post("/projects/{slug}/keys", response={201: KeyOut, **_WRITE_ERRORS}, tags=["keys"])
def add_key(request: HttpRequest, slug: str, data: KeyIn):
    """Store a provider key, encrypted, as the environment's active key (admin)."""
    project, _ = _project(request, slug, Role.ADMIN)
    environment = _environment(project, data.environment)
    try:
        key = keys.add_provider_key(
            environment,
            data.secret,
            name=data.name,
            base_url=data.base_url,
            issued_at=data.issued_at,
            by=_user(request),
            ip=client_ip(request),
        )
    except ValidationError as exc:
        raise _service_error(exc) from None
    return Status(201, key)


@router.post(
    "/projects/{slug}/keys/{id}/rotate",
    response={200: KeyOut, **_WRITE_ERRORS},
    tags=["keys"],
)
def rotate_key(request: HttpRequest, slug: str, id: int, data: RotateIn):
    """Replace a key's secret: the new key is active at once, the old one retires in 24 h."""
    project, _ = _project(request, slug, Role.ADMIN)
    key = _key(project, id)
    try:
        new = keys.rotate_key(key, data.secret, by=_user(request), ip=client_ip(request))
    except ValidationError as exc:
        raise _service_error(exc) from None
    return new


@router.post("/projects/{slug}/keys/{id}/revoke", response={200: KeyOut, **_ERRORS}, tags=["keys"])
def revoke_key(request: HttpRequest, slug: str, id: int):
    """Stop using a key at once (admin)."""
    project, _ = _project(request, slug, Role.ADMIN)
    key = _key(project, id)
    keys.revoke_key(key, by=_user(request), ip=client_ip(request))
    return key


# ---- gateway tokens --------------------------------------------------------------------


@router.get("/projects/{slug}/tokens", response={200: list[TokenOut], **_ERRORS}, tags=["tokens"])
def list_tokens(request: HttpRequest, slug: str):
    """Gateway tokens of the project; only their first characters are kept."""
    project, _ = _project(request, slug)
    return project.gateway_tokens.select_related("environment")


@router.post(
    "/projects/{slug}/tokens", response={201: NewTokenOut, **_WRITE_ERRORS}, tags=["tokens"]
)
def create_token(request: HttpRequest, slug: str, data: TokenIn):
    """Make a km_… gateway token for an environment (member or admin). Shown only once."""
    project, _ = _project(request, slug, Role.MEMBER)
    environment = _environment(project, data.environment)
    token, plaintext = tokens.create_gateway_token(
        environment, data.name, by=_user(request), ip=client_ip(request)
    )
    return Status(
        201,
        {
            "id": token.pk,
            "name": token.name,
            "environment": environment.name,
            "prefix": token.prefix,
            "created_at": token.created_at,
            "token": plaintext,
        },
    )


@router.post(
    "/projects/{slug}/tokens/{id}/revoke",
    response={200: TokenOut, **_ERRORS},
    tags=["tokens"],
)
def revoke_token(request: HttpRequest, slug: str, id: int):
    """Revoke a gateway token (admin, or the member who made it)."""
    project, role = _project(request, slug, Role.MEMBER)
    token = project.gateway_tokens.select_related("environment").filter(pk=id).first()
    if token is None:
        raise Http404("No such token")
    if not can_revoke_gateway_token(_user(request), role, token):
        raise PermissionDenied("Only an admin or the token's creator can revoke it.")
    tokens.revoke_gateway_token(token, by=_user(request), ip=client_ip(request))
    return token


# ---- key hygiene -----------------------------------------------------------------------


class HygieneOut(Schema):
    id: int
    kind: str = Field(..., description="api, admin (provider keys) or token (gateway tokens)")
    project: str
    environment: str
    name: str
    masked: str
    status: str
    age_days: int
    rotation_days: int
    stage: str | None = Field(..., description="ok, due or overdue; null unless active")
    flags: list[str] = Field(..., description="unused, shared, invalid, leaked")
    issued_at: datetime
    last_used_at: datetime | None
    last_validated_at: datetime | None


class ValidationOut(Schema):
    id: int
    result: str = Field(..., description="valid, invalid or unknown (provider unreachable)")
    status_code: int | None
    detail: str
    last_validated_at: datetime | None
    invalid_at: datetime | None


@router.get("/keys/hygiene", response={200: list[HygieneOut], 401: ErrorOut}, tags=["keys"])
def key_hygiene(request: HttpRequest):
    """Every key and gateway token in the projects the caller can see: age, stage, flags."""
    from accounts.hygiene import hygiene_for_user

    return hygiene_for_user(_user(request))


@router.post(
    "/projects/{slug}/keys/{id}/validate",
    response={200: ValidationOut, **_ERRORS},
    tags=["keys"],
)
def validate_key(request: HttpRequest, slug: str, id: int):
    """Ask the provider whether the key still works (admin). Network trouble is "unknown"."""
    from accounts.validation import validate_key as validate

    project, _ = _project(request, slug, Role.ADMIN)
    key = _key(project, id)
    result = validate(key, by=_user(request), ip=client_ip(request))
    return {
        **result.as_dict(),
        "last_validated_at": key.last_validated_at,
        "invalid_at": key.invalid_at,
    }
