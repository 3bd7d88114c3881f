"""Django admin for the price table. Prices are added, never edited in place: a change is
a new row with a later start, so calls already made keep the price they were made at."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.audit import client_ip
from usage.models import ModelPrice
from usage.pricing import PRICE_FIELDS, clean_pattern, clean_price, set_price


class ModelPriceForm(forms.ModelForm):
    class Meta:
        model = ModelPrice
        fields = ["model", "match_pattern", "effective_from", *PRICE_FIELDS]

    def clean_match_pattern(self):
        try:
            return clean_pattern(self.cleaned_data.get("match_pattern", ""))
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["match_pattern"]) from None

    def clean(self):
        cleaned = super().clean()
        for field in PRICE_FIELDS:
            try:
                clean_price(field, cleaned.get(field))  # the same rules as set_price
            except ValidationError as exc:
                self.add_error(None, exc)
        if all(cleaned.get(f) is None for f in PRICE_FIELDS):
            raise ValidationError("Give at least one price.")
        return cleaned


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    form = ModelPriceForm
    list_display = [
        "model",
        "effective_from",
        "input_per_1m",
        "cached_input_per_1m",
        "output_per_1m",
        "audio_per_minute",
        "source",
        "created_by",
    ]
    list_filter = ["source"]
    search_fields = ["model", "match_pattern"]
    date_hierarchy = "effective_from"

    def has_change_permission(self, request, obj=None):
        return False  # view only: change a price by adding a row

    def has_delete_permission(self, request, obj=None):
        # Only a price that is not yet in force can go without rewriting the past.
        return (
            super().has_delete_permission(request, obj)
            and obj is not None
            and obj.effective_from > timezone.now()
        )

    def save_model(self, request, obj, form, change):
        # set_price writes the row and the audit event; copy its pk back for the admin.
        row = set_price(
            obj.model,
            obj.effective_from,
            by=request.user,
            match_pattern=obj.match_pattern,
            ip=client_ip(request),
            **{f: getattr(obj, f) for f in PRICE_FIELDS},
        )
        obj.pk = row.pk
        obj.created_by = row.created_by
