"""Gateway token → where to send the call, with a short in-process cache.

A cached route lives GATEWAY_AUTH_CACHE_SECONDS, so a revoked token or a rotated
key takes effect within seconds and a warm gateway makes no query per request.
The decrypted provider key lives only in this process's memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection

from accounts.tokens import GATEWAY_PREFIX

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route:
    token_id: int
    project_id: int
    project_name: str
    environment_id: int
    environment_name: str
    key_id: int | None
    base_url: str | None
    secret: str | None = field(default=None, repr=False)
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


def read_in_thread(read: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`read` as a coroutine that runs in a worker thread and closes its database
    connection afterwards: the gateway reads rarely (cache misses), so a thread pool
    must not hold a connection per thread."""

    def run(*args: Any) -> T:
        close_old_connections()
        try:
            return read(*args)
        finally:
            connection.close()

    return sync_to_async(run, thread_sensitive=False)


def load_route(digest: str) -> Route | None:
    from accounts.models import GatewayToken

    token = (
        GatewayToken.objects.select_related("project", "environment")
        .filter(digest=digest, revoked_at__isnull=True)
        .first()
    )
    if token is None:
        return None
    key = token.environment.active_key()
    return Route(
        token_id=token.pk,
        project_id=token.project_id,
        project_name=token.project.name,
        environment_id=token.environment_id,
        environment_name=token.environment.name,
        key_id=key.pk if key else None,
        base_url=key.base_url.rstrip("/") if key else None,
        secret=key.reveal_secret() if key else None,
        requests_per_minute=token.requests_per_minute,
        tokens_per_minute=token.tokens_per_minute,
    )


class RouteCache:
    def __init__(self, ttl: float | None = None, negative_ttl: float = 2.0,
                 max_entries: int = 10_000) -> None:
        self.ttl = settings.GATEWAY_AUTH_CACHE_SECONDS if ttl is None else ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Route | None, float]] = {}
        self._loading: dict[str, asyncio.Future[Route | None]] = {}
        self._load = read_in_thread(load_route)

    async def resolve(self, token: str) -> Route | None:
        if not token.startswith(GATEWAY_PREFIX) or len(token) > 200:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        # Many concurrent first calls with one token make one query, not many.
        pending = self._loading.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Route | None] = asyncio.get_running_loop().create_future()
        self._loading[digest] = future
        try:
            route = await self._load(digest)
            future.set_result(route)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._loading[digest]
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        ttl = self.ttl if route is not None else self.negative_ttl
        self._entries[digest] = (route, time.monotonic() + ttl)
        return route

    def clear(self) -> None:
        self._entries.clear()
