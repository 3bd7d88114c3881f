"""Forms of the project pages. They only check shapes; the rules live in
accounts.projects / accounts.keys / accounts.tokens, whose ValidationErrors the
views put back on these forms (ServiceErrorsMixin.error_fields maps codes to fields)."""

from __future__ import annotations

from datetime import datetime, time
from typing import TYPE_CHECKING

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from accounts import vault
from accounts.forms import ServiceErrorsMixin
from accounts.models import Environment, Project

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise


class SecretField(forms.CharField):
    """A pasted provider key, checked by the vault's own rule so that its error shows
    together with the other fields' errors. Never rendered back into the page."""

    @sensitive_variables("value")
    def clean(self, value):  # type: ignore[no-untyped-def]
        value = super().clean(value)
        return vault.clean_secret(value) if value else value


def _secret_field(label: StrOrPromise) -> forms.CharField:
    # PasswordInput never renders its value, so a failed submit does not echo the secret.
    return SecretField(
        label=label,
        max_length=512,
        strip=False,
        widget=forms.PasswordInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}
        ),
    )


class ProjectForm(ServiceErrorsMixin, forms.Form):
    auto_id_format = "project-%s"
    error_fields = {"name": "name", "slug": "slug", "slug_taken": "slug"}

    name = forms.CharField(label=_("Name"), max_length=100)
    slug = forms.CharField(
        label=_("Slug"),
        max_length=50,
        required=False,
        help_text=_("Used in URLs. Leave empty to make one from the name."),
    )


class EnvironmentForm(ServiceErrorsMixin, forms.Form):
    auto_id_format = "env-%s"
    error_fields = {"name": "name", "exists": "name"}

    name = forms.CharField(
        label=_("Environment name"), max_length=40, help_text=_("e.g. production, staging, dev")
    )


class EnvironmentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Environment) -> str:  # type: ignore[override]
        return obj.name  # the project is the page's; "alpha/production" would repeat it


class _EnvironmentChoiceForm(forms.Form):
    environment = EnvironmentChoiceField(
        label=_("Environment"), queryset=Environment.objects.none(), empty_label=None
    )

    def __init__(self, project: Project, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["environment"].queryset = project.environments.all()  # type: ignore[attr-defined]


class ProviderKeyForm(ServiceErrorsMixin, _EnvironmentChoiceForm):
    auto_id_format = "key-%s"
    error_fields = {
        "invalid_secret": "secret",
        "future_issued_at": "issued_at",
        "active_key_exists": "environment",
    }

    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        required=False,
        help_text=_("Leave empty for project-environment-date."),
    )
    secret = _secret_field(_("Secret key"))
    base_url = forms.URLField(
        label=_("Base URL"),
        required=False,
        assume_scheme="https",
        help_text=_("Leave empty for the OpenAI API; set it for a compatible provider or relay."),
    )
    issued_at = forms.DateField(
        label=_("Issued on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("When the provider issued the key, for rotation reminders. Default: today."),
    )

    def issued_at_datetime(self) -> datetime | None:
        day = self.cleaned_data.get("issued_at")
        if day is None:
            return None
        return timezone.make_aware(datetime.combine(day, time.min))

    def add_key(self, *, by, ip: str | None):
        """Store the key through accounts.keys (raises ValidationError for the form)."""
        from accounts.keys import add_provider_key
        from accounts.models import ProviderKey

        data = self.cleaned_data
        return add_provider_key(
            data["environment"],
            data["secret"],
            name=data["name"],
            base_url=data["base_url"],
            issued_at=self.issued_at_datetime(),
            kind=data.get("kind") or ProviderKey.Kind.API,
            by=by,
            ip=ip,
        )


class RotateKeyForm(ServiceErrorsMixin, forms.Form):
    auto_id_format = "rotate-%s"
    error_fields = {"invalid_secret": "secret", "same": "secret", "revoked": "secret"}

    secret = _secret_field(_("New secret key"))


class GatewayTokenForm(ServiceErrorsMixin, _EnvironmentChoiceForm):
    auto_id_format = "token-%s"

    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        required=False,
        help_text=_("Where the token is used, e.g. “web-backend”."),
    )
