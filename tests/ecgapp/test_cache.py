"""The Redis cache keeps one client per pool (ecgapp.cache), and still reads and writes like Django's."""
from __future__ import annotations

import os

import pytest

from ecgapp.cache import PooledRedisCache

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (a real Redis)")


def test_one_client_per_pool_and_the_cache_still_works():
    cache = PooledRedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": "test-pooled-cache"})
    assert cache._cache.get_client(write=True) is cache._cache.get_client(write=True)
    cache.set("k", {"n": 1}, 30)
    assert cache.get("k") == {"n": 1}
    assert cache.add("k2", 1, 30) and cache.incr("k2") == 2 and cache.get("k2") == 2
    cache.delete_many(["k", "k2"])
    assert cache.get("k") is None
