"""Locks and small bookkeeping shared by every worker and portal process,
in Redis: one connection pool per process."""

from __future__ import annotations

import functools

import redis
from django.conf import settings

DEPLOY_LOCK_SECONDS = 900


@functools.cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def deploy_lock(service_id: int, *, timeout: int = DEPLOY_LOCK_SECONDS):
    """One deploy (or reconcile, sleep, wake) of a service at a time, across
    every worker. The lock expires by itself, so a worker that died holding
    it blocks nobody for longer than `timeout`."""
    return redis_client().lock(f"hakobune:deploy-lock:service:{service_id}", timeout=timeout, blocking_timeout=timeout)
