from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("Users need an email address")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in with an email address. Staff are admins of every project."""

    email = models.EmailField(_("email"), unique=True)
    name = models.CharField(_("name"), max_length=150, blank=True)
    language = models.CharField(max_length=10, blank=True, choices=settings.LANGUAGES)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email

    def get_short_name(self) -> str:
        return self.name or self.email


class Role(models.TextChoices):
    ADMIN = "admin", _("Admin")
    MEMBER = "member", _("Member")
    VIEWER = "viewer", _("Viewer")


# What a role may do is decided by rank: admin > member > viewer.
ROLE_RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3}


class RotationStage(models.TextChoices):
    OK = "ok", _("ok")
    DUE = "due", _("due for rotation")
    OVERDUE = "overdue", _("overdue for rotation")


def age_in_days(since: datetime, now: datetime | None = None) -> int:
    """Whole days elapsed (rounded down): a key issued 75 days and 23 hours ago is 75."""
    return max(((now or timezone.now()) - since).days, 0)


def rotation_stage_for(since: datetime, policy_days: int, now: datetime | None = None) -> str:
    """ok → due (age ≥ policy − ROTATION_WARNING_DAYS) → overdue (age ≥ policy).

    With a 90-day policy: 75 days old is ok, 76 and 89 are due, 90 is overdue.
    """
    age = age_in_days(since, now)
    if age >= policy_days:
        return RotationStage.OVERDUE
    if age >= policy_days - settings.ROTATION_WARNING_DAYS:
        return RotationStage.DUE
    return RotationStage.OK


class Project(models.Model):
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=50, unique=True)
    rotation_days = models.PositiveIntegerField(
        _("rotate keys every (days)"), default=settings.ROTATION_DAYS_DEFAULT
    )
    provider_project_id = models.CharField(
        _("provider project id"),
        max_length=100,
        blank=True,
        help_text=_("the provider's project id (proj_…), to match imported usage"),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def visible_to(cls, user: User) -> models.QuerySet[Project]:
        if not user.is_authenticated or not user.is_active:
            return cls.objects.none()
        if user.is_staff:
            return cls.objects.all()
        return cls.objects.filter(memberships__user=user)

    def role_of(self, user: User) -> str | None:
        if not user.is_authenticated or not user.is_active:
            return None
        if user.is_staff:
            return Role.ADMIN
        return self.memberships.filter(user=user).values_list("role", flat=True).first()

    def admins(self) -> models.QuerySet[User]:
        return User.objects.filter(
            is_active=True, memberships__project=self, memberships__role=Role.ADMIN
        )


class Environment(models.Model):
    project = models.ForeignKey(Project, models.CASCADE, related_name="environments")
    name = models.SlugField(_("name"), max_length=40)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="environment_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"

    def active_key(self) -> ProviderKey | None:
        return self.provider_keys.filter(
            status=ProviderKey.Status.ACTIVE, kind=ProviderKey.Kind.API
        ).first()


class Membership(models.Model):
    user = models.ForeignKey(User, models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class ProviderKey(models.Model):
    """A provider API key, stored encrypted. Only prefix…last4 is ever shown."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        RETIRING = "retiring", _("retiring")
        REVOKED = "revoked", _("revoked")

    class Kind(models.TextChoices):
        API = "api", _("API key")
        ADMIN = "admin", _("Admin key (usage import)")

    project = models.ForeignKey(Project, models.CASCADE, related_name="provider_keys")
    environment = models.ForeignKey(Environment, models.CASCADE, related_name="provider_keys")
    name = models.CharField(_("name"), max_length=100)
    provider = models.CharField(max_length=30, default="openai")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.API)
    base_url = models.URLField(_("base URL"), default=settings.DEFAULT_PROVIDER_BASE_URL)
    secret_encrypted = models.TextField(editable=False)
    prefix = models.CharField(max_length=20, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    fingerprint = models.CharField(max_length=64, db_index=True, editable=False)
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    retiring_until = models.DateTimeField(null=True, blank=True)
    replaced_by = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="replaced"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")
    # Key hygiene (accounts/validation.py, accounts/leaks.py).
    last_validated_at = models.DateTimeField(null=True, blank=True)
    invalid_at = models.DateTimeField(null=True, blank=True)
    leaked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "environment", "-created_at"]
        constraints = [
            # The gateway forwards with "the" active key of an environment.
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(status="active", kind="api"),
                name="providerkey_one_active_per_environment",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    def __repr__(self) -> str:
        return f"<ProviderKey {self.pk} {self.masked} {self.status}>"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last4}"

    def age_days(self, now: datetime | None = None) -> int:
        return age_in_days(self.issued_at, now)

    @property
    def rotation_since(self) -> datetime:
        return self.issued_at

    def rotation_stage(self, now: datetime | None = None) -> str:
        return rotation_stage_for(self.issued_at, self.project.rotation_days, now)

    def reveal_secret(self) -> str:
        """The plaintext, for the one call that sends it to the provider. Never store or log it."""
        from accounts import vault

        return vault.decrypt(self.secret_encrypted)


class GatewayToken(models.Model):
    """A km_… token that a client uses against the gateway, stored as its SHA-256."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="gateway_tokens")
    environment = models.ForeignKey(Environment, models.CASCADE, related_name="gateway_tokens")
    name = models.CharField(_("name"), max_length=100)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Optional per-token limits, enforced by the gateway in Redis (blank = no limit).
    requests_per_minute = models.PositiveIntegerField(_("requests per minute"), null=True,
                                                      blank=True)
    tokens_per_minute = models.PositiveIntegerField(_("tokens per minute"), null=True,
                                                    blank=True)

    class Meta:
        ordering = ["project", "environment", "-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"

    def age_days(self, now: datetime | None = None) -> int:
        return age_in_days(self.created_at, now)

    @property
    def rotation_since(self) -> datetime:
        return self.created_at

    def rotation_stage(self, now: datetime | None = None) -> str:
        return rotation_stage_for(self.created_at, self.project.rotation_days, now)


class ApiToken(models.Model):
    """A personal kmu_… token for the JSON API, stored as its SHA-256."""

    user = models.ForeignKey(User, models.CASCADE, related_name="api_tokens")
    name = models.CharField(_("name"), max_length=100)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user", "-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class KeyStageNotice(models.Model):
    """One email to a project's admins about one key or token reaching a stage.

    Unique per (key or token, stage, episode), so however many runs or workers see
    the same change, one row exists and only the run that created it queues the
    email. `episode` is when the condition began: issued_at for rotation stages,
    invalid_at for an invalidity episode, leaked_at for a leak.
    """

    class Stage(models.TextChoices):
        DUE = "due", _("due for rotation")
        OVERDUE = "overdue", _("overdue for rotation")
        INVALID = "invalid", _("invalid")
        LEAKED = "leaked", _("leaked")

    project = models.ForeignKey(Project, models.CASCADE, related_name="key_notices")
    provider_key = models.ForeignKey(
        ProviderKey, models.CASCADE, null=True, blank=True, related_name="notices"
    )
    gateway_token = models.ForeignKey(
        GatewayToken, models.CASCADE, null=True, blank=True, related_name="notices"
    )
    stage = models.CharField(max_length=10, choices=Stage.choices)
    episode = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.PositiveIntegerField(default=0)
    # Addresses already emailed: a retry after a partial failure skips them.
    delivered_to = models.JSONField(default=list, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_key", "stage", "episode"],
                condition=Q(provider_key__isnull=False),
                name="keystagenotice_unique_key_stage",
            ),
            models.UniqueConstraint(
                fields=["gateway_token", "stage", "episode"],
                condition=Q(gateway_token__isnull=False),
                name="keystagenotice_unique_token_stage",
            ),
            models.CheckConstraint(
                condition=Q(provider_key__isnull=False, gateway_token__isnull=True)
                | Q(provider_key__isnull=True, gateway_token__isnull=False),
                name="keystagenotice_key_or_token",
            ),
        ]

    def __str__(self) -> str:
        target = (
            f"key {self.provider_key_id}"
            if self.provider_key_id
            else (f"token {self.gateway_token_id}")
        )
        return f"{target} {self.stage}"

    @property
    def subject(self) -> ProviderKey | GatewayToken:
        return self.provider_key or self.gateway_token  # type: ignore[return-value]


class AuditEvent(models.Model):
    """Who changed what, when and from where. Never holds a secret."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")
    project = models.ForeignKey(
        Project, models.SET_NULL, null=True, blank=True, related_name="audit_events"
    )
    action = models.CharField(max_length=50, db_index=True)
    target = models.CharField(max_length=100, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"


class Invitation(models.Model):
    """An emailed invitation to join a project with a role. The link's token is stored
    as its SHA-256 only; the invitation works once and until `expires_at`."""

    project = models.ForeignKey(Project, models.CASCADE, related_name="invitations")
    email = models.EmailField(_("email"))
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, models.SET_NULL, null=True, blank=True, related_name="+")
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "email"], name="invitation_project_email")]

    def __str__(self) -> str:
        return f"{self.email} → {self.project} as {self.role}"

    def is_pending(self, now: datetime | None = None) -> bool:
        return self.accepted_at is None and self.expires_at > (now or timezone.now())
