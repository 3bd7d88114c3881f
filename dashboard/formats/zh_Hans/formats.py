"""Simplified Chinese formats: Django's, except that amounts group by thousands with a
comma (¥1,234.56 / $1,234.56, as Chinese billing pages write them) instead of
Django's ungrouped default."""

from django.conf.locale.zh_Hans.formats import *  # noqa: F403

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
