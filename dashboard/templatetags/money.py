"""Money in templates: always with its currency, sub-cent amounts kept, unpriced never $0.

    {% load money %}
    {{ amount|usd }}                        $1,234.57 · $0.195 · $0.0012 · unpriced (None)
    {% cost row.cost row.unpriced_calls %}  adds "+ unpriced" when some calls had no price

Numbers go through django.utils.formats.number_format, so separators follow the
active language.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django import template
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

register = template.Library()

SMALL = Decimal(1)  # below a dollar, keep up to 4 decimals
TINY = Decimal("0.0001")


def format_usd(amount: Decimal | int | float | str | None) -> str:
    """$ and the amount: 2 decimals from $1 up; up to 4 (at least 2) below $1."""
    if amount is None:
        return _("unpriced")
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return ""
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value == 0:
        places = 2
    elif value >= SMALL:
        places = 2
    elif value < TINY:
        return f"{sign}< ${number_format(TINY, 4, use_l10n=True)}"
    else:
        # 0.1950 → 0.195; 0.5000 → 0.50
        text = format(value.quantize(TINY, rounding=ROUND_HALF_UP), "f").rstrip("0")
        places = max(2, len(text.partition(".")[2]))
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{sign}${number_format(rounded, places, use_l10n=True, force_grouping=True)}"


@register.filter
def usd(amount: Any) -> str:
    return format_usd(amount)


@register.simple_tag
def cost(amount: Decimal | None, unpriced_calls: int = 0) -> SafeString:
    """The cost cell of a usage row: calls without a price show as "unpriced"."""
    if amount is None or (unpriced_calls and not amount):
        return format_html('<span class="badge badge--warning">{}</span>', _("unpriced"))
    if unpriced_calls:
        return format_html(
            '{} <span class="badge badge--warning" title="{}">+ {}</span>',
            format_usd(amount),
            _("%(n)s calls had no price") % {"n": unpriced_calls},
            _("unpriced"),
        )
    return format_html("{}", format_usd(amount))
