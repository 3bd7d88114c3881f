"""The user's language: chosen with the switcher, remembered on the account, used for
every page and email.

Anonymous visitors get the language of their cookie or browser (LocaleMiddleware). A
logged-in user who picked a language gets it everywhere, on any browser, and emails
sent to them (password reset, alerts, key notices) follow User.language too.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.views.decorators.http import require_POST
from django.views.i18n import set_language as django_set_language

from accounts.models import User

SUPPORTED = {code for code, _ in settings.LANGUAGES}


def language_for(user: User | None, fallback: str | None = None) -> str:
    """The language to write to this user in: theirs, else the fallback, else the site's."""
    chosen = getattr(user, "language", "") or ""
    if chosen in SUPPORTED:
        return chosen
    return fallback or translation.get_language() or settings.LANGUAGE_CODE


@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Django's set_language (cookie + redirect), and for a logged-in user also
    User.language, so the choice follows them to other browsers and into emails."""
    response = django_set_language(request)
    code = request.POST.get("language", "")
    user = request.user
    if code in SUPPORTED and user.is_authenticated and user.language != code:  # type: ignore[union-attr]
        user.language = code  # type: ignore[union-attr]
        user.save(update_fields=["language"])  # type: ignore[union-attr]
    return response


class UserLanguageMiddleware:
    """After AuthenticationMiddleware: a logged-in user's saved language wins over the
    browser's (LocaleMiddleware has already picked that one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        chosen = getattr(user, "language", "") if user and user.is_authenticated else ""
        if chosen in SUPPORTED and chosen != getattr(request, "LANGUAGE_CODE", None):
            translation.activate(chosen)
            request.LANGUAGE_CODE = chosen  # type: ignore[attr-defined]
        return self.get_response(request)
