"""Per-gateway-token request and token rate limits, in Redis, per clock minute.

Requests are counted when a call starts; tokens when its usage is known, so a
token limit stops the calls that come after the minute's budget is spent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dashboard.redis_client import get_async_redis

# KEYS: requests counter, tokens counter. ARGV: rpm limit (0 = none), tpm limit (0 = none).
# Returns {requests after this one, tokens so far, refused flag}.
_CHECK = """
local tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
local rpm = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
if tpm > 0 and tokens >= tpm then
  return {tonumber(redis.call('GET', KEYS[1]) or '0'), tokens, 2}
end
local requests = redis.call('INCR', KEYS[1])
if requests == 1 then redis.call('EXPIRE', KEYS[1], 61) end
if rpm > 0 and requests > rpm then
  redis.call('DECR', KEYS[1])
  return {requests - 1, tokens, 1}
end
return {requests, tokens, 0}
"""


@dataclass(slots=True)
class Verdict:
    allowed: bool
    reason: str  # "requests" or "tokens" when refused
    headers: list[tuple[bytes, bytes]]


def _keys(token_id: int, minute: int) -> tuple[str, str]:
    return f"km:rl:{token_id}:{minute}:r", f"km:rl:{token_id}:{minute}:t"


async def check(token_id: int, rpm: int | None, tpm: int | None) -> Verdict:
    now = time.time()
    minute = int(now // 60)
    reset = f"{max(1, int(60 - now % 60))}s"
    redis = get_async_redis()
    requests, tokens, refused = await redis.eval(
        _CHECK, 2, *_keys(token_id, minute), rpm or 0, tpm or 0)
    headers = []
    if rpm:
        headers += [(b"x-ratelimit-limit-requests", str(rpm).encode()),
                    (b"x-ratelimit-remaining-requests", str(max(rpm - requests, 0)).encode()),
                    (b"x-ratelimit-reset-requests", reset.encode())]
    if tpm:
        headers += [(b"x-ratelimit-limit-tokens", str(tpm).encode()),
                    (b"x-ratelimit-remaining-tokens", str(max(tpm - tokens, 0)).encode()),
                    (b"x-ratelimit-reset-tokens", reset.encode())]
    if refused:
        headers.append((b"retry-after", reset[:-1].encode()))
    reason = {1: "requests", 2: "tokens"}.get(refused, "")
    return Verdict(allowed=not refused, reason=reason, headers=headers)


async def add_tokens(token_id: int, count: int) -> None:
    if count <= 0:
        return
    key = _keys(token_id, int(time.time() // 60))[1]
    redis = get_async_redis()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incrby(key, count)
        pipe.expire(key, 61)
        await pipe.execute()
