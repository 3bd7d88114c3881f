"""The hard budget limit at the gateway: reserve a call's worst-case cost before
forwarding it, settle to the actual cost afterwards — atomically, in Redis.

Keys (money in integer units of 1e-10 USD, months in settings.TIME_ZONE):
  km:budget:{project}          the hard limit; "0" = none. Written when a budget is
                               saved, loaded from the database when missing.
  km:live:{project}:{YYYY-MM}  spend this month: built from the rollups once, then
                               raised by every settled gateway call (and by the flush
                               for calls that did not come through the gateway).
  km:held:{project}:{YYYY-MM}  reservations of calls in flight (a sorted set scored by
                               expiry, so a crashed gateway's holds lapse by themselves).

The check and the hold happen in one Lua script, so N concurrent calls can never
together reserve more than the limit: the overshoot is bounded by how far one call's
actual cost exceeds its estimate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings

from dashboard.redis_client import get_async_redis
from usage.gateway_auth import read_in_thread
from usage.pricing import PriceBook
from usage.rollups import from_units, to_units

log = logging.getLogger("keymeter.gateway")

HOLD_SECONDS = 900  # longer than any call; a hold of a crashed process lapses after this

_RESERVE = """
local limit = redis.call('GET', KEYS[1])
if not limit then return {-1, 0, 0} end
limit = tonumber(limit)
if limit == 0 then return {2, 0, 0} end
local live = redis.call('GET', KEYS[2])
if not live then return {-2, 0, 0} end
live = tonumber(live)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local held = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  held = held + tonumber(string.match(member, ':(%d+)$'))
end
local estimate = tonumber(ARGV[4])
if live + held + estimate > limit or live + held >= limit then
  return {0, live, limit}
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3] .. ':' .. ARGV[4])
redis.call('EXPIRE', KEYS[3], 3000000)
return {1, live, limit}
"""

_SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[2]) end
return 1
"""


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(settings.TIME_ZONE)).strftime("%Y-%m")


def budget_key(project_id: int) -> str:
    return f"km:budget:{project_id}"


def live_key(project_id: int, month: str) -> str:
    return f"km:live:{project_id}:{month}"


def held_key(project_id: int, month: str) -> str:
    return f"km:held:{project_id}:{month}"


@dataclass(slots=True)
class Hold:
    project_id: int
    month: str
    member: str


@dataclass(slots=True)
class Refusal:
    spent: Decimal
    limit: Decimal


def hard_limit_units(project_id: int) -> int:
    from usage.budgets import hard_limit_units

    return hard_limit_units(project_id) or 0


def spend_units(project_id: int, ts: float) -> int:
    """The project's spend this month, from the rollups: what the live counter starts at."""
    from usage.models import Budget

    whole_project = Budget(project_id=project_id)  # unsaved: only its scope is read
    return to_units(whole_project.spend_this_period(datetime.fromtimestamp(ts, UTC)))


class PriceCache:
    """The price table in memory, reloaded in the background every PRICE_REFRESH s."""

    REFRESH = 60.0

    def __init__(self) -> None:
        self.book: PriceBook | None = None
        self.loaded_at = 0.0
        self._loading: asyncio.Task | None = None

    async def get(self) -> PriceBook:
        stale = time.monotonic() - self.loaded_at > self.REFRESH
        if self.book is None:
            self.book = await _load_book()
            self.loaded_at = time.monotonic()
        elif stale and self._loading is None:
            self._loading = asyncio.ensure_future(self._reload())
        return self.book

    async def _reload(self) -> None:
        try:
            self.book = await _load_book()
            self.loaded_at = time.monotonic()
        except Exception:
            log.warning("price table reload failed; keeping the previous one", exc_info=True)
        finally:
            self._loading = None


_load_book = read_in_thread(PriceBook.load)
_hard_limit_units = read_in_thread(hard_limit_units)
_spend_units = read_in_thread(spend_units)
prices = PriceCache()


def estimate_units(book: PriceBook, model: str, payload: dict, body_size: int,
                   endpoint: str) -> int:
    """The worst-case cost of a call before it is made, in units."""
    # ~4 bytes of JSON per token in practice; /3 errs on the safe side.
    input_tokens = max(body_size // 3, 1)
    if endpoint == "/v1/embeddings":
        output_tokens = 0
    else:
        requested = (payload.get("max_completion_tokens") or payload.get("max_tokens")
                     or payload.get("max_output_tokens"))
        output_tokens = (requested if isinstance(requested, int) and requested > 0
                         else settings.GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS)
        count = payload.get("n")
        if isinstance(count, int) and 1 < count <= 128:
            output_tokens *= count
    try:
        cost = book.cost(model, datetime.now().astimezone(), input_tokens=input_tokens,
                         output_tokens=output_tokens)
    except (ValueError, TypeError):
        cost = None
    return to_units(cost) if cost else 0


async def reserve(project_id: int, request_id: str, estimate: int) -> Hold | Refusal | None:
    """Hold `estimate` against the project's hard limit; None when it has no hard limit."""
    now = time.time()
    month = month_of(now)
    keys = [budget_key(project_id), live_key(project_id, month), held_key(project_id, month)]
    redis = get_async_redis()
    member = f"{request_id}:{estimate}"
    for _ in range(3):
        status, live, limit = await redis.eval(
            _RESERVE, 3, *keys, now, now + HOLD_SECONDS, request_id, estimate)
        if status == 1:
            return Hold(project_id, month, member)
        if status == 2:
            return None
        if status == 0:
            return Refusal(spent=from_units(int(live)), limit=from_units(int(limit)))
        if status == -1:
            units = await _hard_limit_units(project_id)
            await redis.set(keys[0], units, nx=True)
        elif status == -2:
            units = await _spend_units(project_id, now)
            await redis.set(keys[1], units, nx=True, ex=40 * 86400)
    return None


async def settle(hold: Hold, actual_units: int) -> None:
    redis = get_async_redis()
    await redis.eval(_SETTLE, 2, live_key(hold.project_id, hold.month),
                     held_key(hold.project_id, hold.month), hold.member, max(actual_units, 0))


_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return 0
"""


def add_flushed_to_live(calls) -> None:
    """Spend of calls that did not pass the gateway (the ingest API), added by the flush
    once stored. The gateway settles its own calls as they finish."""
    from dashboard.redis_client import get_redis

    units: dict[str, int] = {}
    for call in calls:
        if call.record.source != "gateway" and call.cost:
            key = live_key(call.record.project_id, f"{call.day:%Y-%m}")
            units[key] = units.get(key, 0) + to_units(call.cost)
    if not units:
        return
    try:
        r = get_redis()
        incr = r.register_script(_INCR_IF_EXISTS)
        with r.pipeline(transaction=False) as pipe:
            for key, amount in units.items():
                incr(keys=[key], args=[amount], client=pipe)
            pipe.execute()
    except Exception:
        # The rows are stored; a counter rebuilt from the rollups will include them.
        log.warning("could not add ingested spend to the live budget counters", exc_info=True)
