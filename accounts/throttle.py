"""Login throttling: after LOGIN_THROTTLE_ATTEMPTS failures for one email or one IP
within LOGIN_THROTTLE_WINDOW seconds, further attempts are refused until the window
that started with the first failure has passed. Counters live in the cache (Redis)."""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache


def _subjects(email: str, ip: str | None) -> list[str]:
    # Hash the email so odd characters never reach a cache key and no address is stored.
    email_key = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    subjects = [f"login-throttle:email:{email_key}"]
    if ip:
        subjects.append(f"login-throttle:ip:{ip}")
    return subjects


def _window() -> int:
    return int(getattr(settings, "LOGIN_THROTTLE_WINDOW", 300))


def _limit() -> int:
    return int(getattr(settings, "LOGIN_THROTTLE_ATTEMPTS", 5))


def retry_after(email: str, ip: str | None) -> int:
    """Seconds until the next attempt is allowed; 0 when not throttled."""
    limit, now, wait = _limit(), time.time(), 0.0
    for subject in _subjects(email, ip):
        if (cache.get(f"{subject}:count") or 0) >= limit:
            until = cache.get(f"{subject}:until") or now + _window()
            wait = max(wait, until - now)
    return math.ceil(wait) if wait > 0 else 0


def record_failure(email: str, ip: str | None) -> None:
    window = _window()
    for subject in _subjects(email, ip):
        # add() only sets when absent, so the window starts at the first failure.
        cache.add(f"{subject}:until", time.time() + window, timeout=window)
        cache.add(f"{subject}:count", 0, timeout=window)
        try:
            cache.incr(f"{subject}:count")
        except ValueError:  # expired between add() and incr()
            cache.set(f"{subject}:count", 1, timeout=window)


def clear(email: str) -> None:
    """Forget the email's failures after a successful login. The IP counter stays, so
    one valid account cannot be used to reset guessing at others from the same address."""
    subject = _subjects(email, None)[0]
    cache.delete_many([f"{subject}:count", f"{subject}:until"])
