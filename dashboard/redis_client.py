"""One Redis connection pool per process, from REDIS_URL."""

from __future__ import annotations

import asyncio
import weakref
from functools import lru_cache

import redis
import redis.asyncio
from django.conf import settings


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_async_redis() -> redis.asyncio.Redis:
    """The redis.asyncio client of the running event loop (a client's connections are
    bound to the loop that made them), for REDIS_URL."""
    loop = asyncio.get_running_loop()
    clients = _async_clients.setdefault(loop, {})
    url = settings.REDIS_URL
    if url not in clients:
        # Blocking pool: a burst of concurrent calls waits a moment for a connection
        # (a command takes well under a millisecond) instead of failing as if Redis
        # were down.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=2, socket_timeout=5, socket_connect_timeout=2,
            health_check_interval=30,
        )
        clients[url] = redis.asyncio.Redis(connection_pool=pool)
    return clients[url]
