from __future__ import annotations

import logging

from django import forms
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts import audit, throttle
from accounts.models import User

log = logging.getLogger("keymeter.login")


class ServiceErrorsMixin:
    """Put a ValidationError raised by a service function (accounts.projects, .keys,
    .tokens) on the form field it is about, found by the error's code."""

    error_fields: dict[str, str] = {}
    # Several forms share a page, so each gets its own id prefix (ids stay unique).
    auto_id_format = "id_%s"

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("auto_id", self.auto_id_format)
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def add_service_error(self, exc: ValidationError) -> None:
        code = getattr(exc, "code", None)
        self.add_error(self.error_fields.get(code or "", None), exc)  # type: ignore[attr-defined]


class LoginForm(forms.Form):
    """Email + password, throttled per email and per IP (see accounts.throttle)."""

    email = forms.EmailField(
        label=_("Email"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, request: HttpRequest | None = None, *args, **kwargs) -> None:
        self.request = request
        self.user_cache: User | None = None
        self.throttled = False
        super().__init__(*args, **kwargs)

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        email, password = cleaned.get("email"), cleaned.get("password")
        if not email or not password:
            return cleaned
        email = email.strip().lower()
        ip = audit.client_ip(self.request)
        wait = throttle.retry_after(email, ip)
        if wait:
            self.throttled = True
            log.warning("login refused (throttled) email=%s ip=%s", email, ip)
            minutes = max(1, -(-wait // 60))
            raise ValidationError(
                ngettext(
                    "Too many failed attempts. Try again in %(minutes)d minute.",
                    "Too many failed attempts. Try again in %(minutes)d minutes.",
                    minutes,
                )
                % {"minutes": minutes},
                code="throttled",
            )
        user = authenticate(self.request, email=email, password=password)
        if user is None:
            throttle.record_failure(email, ip)
            log.warning("login failed email=%s ip=%s", email, ip)
            raise ValidationError(
                _("That email and password do not match an active account."), code="invalid"
            )
        throttle.clear(email)
        self.user_cache = user
        return cleaned

    def get_user(self) -> User | None:
        return self.user_cache


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        required=False,
        help_text=_("What the token is for, e.g. “ci-script”."),
    )
