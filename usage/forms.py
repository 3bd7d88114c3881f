"""Forms of the usage pages. They parse what a browser sends (text boxes) into the
values the services take; the rules stay in usage.budget_fields / usage.budgets /
usage.pricing, whose ValidationErrors land on the matching field."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.models import Project
from usage import budget_fields
from usage.pricing import PRICE_FIELDS

MAX_TOKENS = 10_000_000  # per request: larger than any context window
MAX_REQUESTS = 1_000_000_000  # per day


class BudgetForm(forms.Form):
    environment = forms.ChoiceField(label=_("Applies to"), required=False)
    monthly_limit_usd = forms.CharField(
        label=_("Monthly limit (USD)"),
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )
    thresholds = forms.CharField(
        label=_("Alert at (percent of the limit)"),  # "% o" would read as a format
        max_length=100,
        initial="80, 100",
        help_text=_("Comma-separated percentages, e.g. 50, 80, 100."),
    )
    recipients = forms.CharField(
        label=_("Also email"),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Extra addresses, one per line or comma-separated."),
    )
    notify_admins = forms.BooleanField(
        label=_("Email the project’s admins"), required=False, initial=True
    )
    hard_limit = forms.BooleanField(
        label=_("Hard limit: refuse calls once the limit is reached"),
        required=False,
        help_text=_("Only for the whole project. The gateway answers 429 budget_exceeded."),
    )

    def __init__(self, project: Project, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "budget-%s")
        super().__init__(*args, **kwargs)
        names = project.environments.values_list("name", flat=True)
        self.fields["environment"].choices = [("", _("the whole project"))] + [  # type: ignore[attr-defined]
            (n, n) for n in names
        ]

    def clean_monthly_limit_usd(self):
        return budget_fields.clean_limit(self.cleaned_data["monthly_limit_usd"])

    def clean_thresholds(self):
        parts = [p for p in re.split(r"[\s,;%]+", self.cleaned_data["thresholds"]) if p]
        if not all(p.isdigit() for p in parts):
            raise ValidationError(_("Each threshold must be a whole percentage from 1 to 1000."))
        return budget_fields.clean_thresholds([int(p) for p in parts])

    def clean_recipients(self):
        parts = [p for p in re.split(r"[\s,;]+", self.cleaned_data["recipients"]) if p]
        return budget_fields.clean_recipients(parts)


def _price_field(label) -> forms.CharField:
    # Text, not a float widget: prices stay exact decimals from browser to database.
    return forms.CharField(
        label=label,
        required=False,
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )


class PriceForm(forms.Form):
    model = forms.CharField(label=_("Model"), max_length=100)
    effective_from = forms.DateField(
        label=_("Effective from"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("00:00 UTC that day. Default: now. Calls before keep their old price."),
    )
    input_per_1m = _price_field(_("Input / 1M tokens"))
    cached_input_per_1m = _price_field(_("Cached input / 1M"))
    output_per_1m = _price_field(_("Output / 1M tokens"))
    batch_input_per_1m = _price_field(_("Batch input / 1M"))
    batch_output_per_1m = _price_field(_("Batch output / 1M"))
    audio_per_minute = _price_field(_("Audio / minute"))
    match_pattern = forms.CharField(
        label=_("Match pattern"),
        required=False,
        max_length=200,
        help_text=_(
            "A regular expression for other names billed at this price. "
            "Empty: dated snapshots such as model-2024-08-06."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "price-%s")
        super().__init__(*args, **kwargs)

    def prices(self) -> dict[str, str]:
        return {f: self.cleaned_data[f] for f in PRICE_FIELDS if self.cleaned_data.get(f)}


class CalculatorForm(forms.Form):
    model = forms.ChoiceField(label=_("Model"))
    requests_per_day = forms.IntegerField(
        label=_("Requests per day"), min_value=0, max_value=MAX_REQUESTS, initial=1000
    )
    input_tokens = forms.IntegerField(
        label=_("Input tokens per request"), min_value=0, max_value=MAX_TOKENS, initial=100
    )
    cached_input_tokens = forms.IntegerField(
        label=_("of which cached"),
        min_value=0,
        max_value=MAX_TOKENS,
        required=False,
        help_text=_("Input tokens served from the prompt cache (part of the input tokens)."),
    )
    output_tokens = forms.IntegerField(
        label=_("Output tokens per request"), min_value=0, max_value=MAX_TOKENS, initial=300
    )

    def __init__(self, models: list[str], *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "calc-%s")
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m, m) for m in models]  # type: ignore[attr-defined]
        if "gpt-4o-mini" in models:
            self.fields["model"].initial = "gpt-4o-mini"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        cached, total = cleaned.get("cached_input_tokens") or 0, cleaned.get("input_tokens")
        if total is not None and cached > total:
            self.add_error(
                "cached_input_tokens",
                _("Cached tokens are part of the input tokens: at most %(n)s.") % {"n": total},
            )
        cleaned["cached_input_tokens"] = cached
        return cleaned
