"""Django's Redis cache, keeping one redis.Redis per connection pool instead of making one per operation."""
from __future__ import annotations

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _PooledClient(RedisCacheClient):
    """Django 5.2's client builds a new ``redis.Redis`` on every cache operation, and each builds its table of ~170
    response callbacks: two of them per API request (the throttle reads and writes its counter) were about a tenth
    of a job poll's CPU. A ``redis.Redis`` is thread-safe and its pool is fork-safe, so one per pool is kept."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write: bool = False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class PooledRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _PooledClient
