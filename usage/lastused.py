"""`last_used_at` of provider keys and gateway tokens, kept by the flush.

The gateway never writes to the database; the flush, which writes anyway, moves
each key's and token's last-used time forward once per batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Q

from accounts.models import GatewayToken, ProviderKey
from usage.rollups import PricedCall


def latest_use(calls: Iterable[PricedCall]) -> tuple[dict[int, datetime], dict[int, datetime]]:
    keys: dict[int, datetime] = {}
    tokens: dict[int, datetime] = {}
    for call in calls:
        for ident, latest in ((call.provider_key_id, keys), (call.gateway_token_id, tokens)):
            if ident and (ident not in latest or call.created_at > latest[ident]):
                latest[ident] = call.created_at
    return keys, tokens


def mark_last_used(calls: Iterable[PricedCall]) -> None:
    """One UPDATE per key and token in the batch, never moving a time backwards."""
    keys, tokens = latest_use(calls)
    for model, latest in ((ProviderKey, keys), (GatewayToken, tokens)):
        for pk, when in sorted(latest.items()):  # one lock order, like the rollup upserts
            model.objects.filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=when), pk=pk
            ).update(last_used_at=when)
