"""Emails written from three templates: <name>_subject.txt, <name>.txt and <name>.html."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation


def render_email(template: str, context: dict[str, Any], *, language: str, to: str,
                 connection: Any = None) -> EmailMultiAlternatives:
    """One email to one address, in `language`."""
    context = {**context, "LANGUAGE_CODE": language}
    with translation.override(language):
        subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
        text = render_to_string(f"{template}.txt", context)
        html = render_to_string(f"{template}.html", context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to],
                                     connection=connection)
    message.attach_alternative(html, "text/html")
    return message
