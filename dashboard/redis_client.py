"""One Redis connection pool per process, from REDIS_URL."""

from __future__ import annotations

import weakref
from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_async_redis():
    """A redis.asyncio client for the running event loop (clients can't cross loops)."""
    import asyncio

    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # A bounded pool that waits for a free connection: the default one raises
        # past its size, which under a burst would look like "Redis is down".
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=64,
            timeout=2,
            socket_timeout=2,
            socket_connect_timeout=1,
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client
