"""Password reset by email: Django's views and token generator with keymeter's templates.

The email is written in the user's language (User.language, else the language of the
page where the reset was asked for) and its link points at SITE_URL, never at whatever
Host header the request came with. An unknown address gets the same answer as a known
one, so the form cannot be used to find out who has an account; and an address gets at
most RESET_EMAILS_PER_HOUR emails, so the form cannot flood someone's inbox either.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.urls import path, reverse_lazy
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from accounts import throttle
from accounts.language import language_for

RESET_EMAILS_PER_HOUR = 3


def _within_email_quota(address: str) -> bool:
    """Count one reset email to this address; False once the hour's quota is used up."""
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:32]
    key = f"password-reset:{digest}"
    cache.add(key, 0, timeout=3600)  # the hour starts with the first email
    try:
        return cache.incr(key) <= RESET_EMAILS_PER_HOUR
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, timeout=3600)
        return True


class PasswordResetForm(auth_forms.PasswordResetForm):
    email = forms.EmailField(
        label=_("Email"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    def save(self, **kwargs: Any) -> None:  # type: ignore[override]
        # The link in the email: SITE_URL's scheme and host, not the request's Host header.
        parts = urlsplit(settings.SITE_URL)
        kwargs["domain_override"] = parts.netloc
        kwargs["use_https"] = parts.scheme == "https"
        super().save(**kwargs)

    def send_mail(self, subject_template_name: str, email_template_name: str,
                  context: dict[str, Any], from_email: str | None, to_email: str,
                  html_email_template_name: str | None = None) -> None:  # fmt: skip
        if not _within_email_quota(to_email):
            return  # the page says the same either way
        language = language_for(context.get("user"))
        with translation.override(language):
            context = {**context, "LANGUAGE_CODE": language}
            super().send_mail(subject_template_name, email_template_name, context, from_email,
                              to_email, html_email_template_name)  # fmt: skip


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset_form.html"
    form_class = PasswordResetForm
    email_template_name = "accounts/email/password_reset.txt"
    html_email_template_name = "accounts/email/password_reset.html"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"

    def form_valid(self, form):
        # A new password ends the lockout that failed guesses of the old one caused.
        throttle.clear(form.user.email)
        return super().form_valid(form)
    success_url = reverse_lazy("accounts:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


urlpatterns = [
    path("password/reset/", PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),  # fmt: skip
    path(
        "password/reset/done/", PasswordResetCompleteView.as_view(), name="password_reset_complete"
    ),  # fmt: skip
]
