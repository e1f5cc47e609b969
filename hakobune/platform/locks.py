"""Locks and small bookkeeping shared by every worker and portal process,
in Redis: one connection pool per process.

A deploy lock lives DEPLOY_LOCK_TTL seconds in Redis and is renewed by its
holder while held (a thread, every third of that), so a lock whose holder
died (kill -9, a host restart) is free again within DEPLOY_LOCK_TTL, however
long deploys may take. Redis keeps nothing on disk: after a restart of it,
the holder puts its lock back when it renews, unless someone else took it
meanwhile (then it is said in the log, and the holder's release does not
fail the work it did)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time

import redis
from django.conf import settings
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

logger = logging.getLogger(__name__)

DEPLOY_LOCK_TTL = 30


@functools.cache
def redis_client() -> redis.Redis:
    # Bounded waits: a Redis that went away fails a call instead of hanging it.
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=15)


class RenewingLock(Lock):
    """A redis-py lock whose time to live is renewed while it is held, by one
    renewing thread per process (for every lock the process holds). Its
    token is shared by the threads of its process (thread_local=False), so
    the renewing thread can prove it holds it."""

    def __init__(self, *args, **kwargs):
        kwargs["thread_local"] = False
        super().__init__(*args, **kwargs)
        # Held while renewing and while releasing: no renewal comes after a release.
        self._guard = threading.Lock()
        self.lost = False

    def acquire(self, *args, **kwargs) -> bool:
        acquired = super().acquire(*args, **kwargs)
        if acquired:
            self.lost = False
            _renewer.hold(self)
        return acquired

    def release(self) -> None:
        _renewer.drop(self)
        with self._guard:
            try:
                super().release()
            except LockNotOwnedError:
                # It expired or Redis restarted meanwhile: the work done under
                # it stands; only say so.
                logger.warning("the lock %s was no longer held when released", self.name)
            except redis.RedisError as exc:
                # Redis is away: the lock expires by itself within its time to live.
                logger.warning("could not release the lock %s: %s", self.name, exc)

    def renew(self) -> None:
        """Gives the lock its whole time to live again; puts it back when
        Redis lost it (a restart) and nobody else took it meanwhile."""
        with self._guard:
            token = self.local.token
            if token is None:
                return
            try:
                self.do_reacquire()
            except LockNotOwnedError:
                if self.redis.set(self.name, token, nx=True, px=int(self.timeout * 1000)):
                    logger.warning("the lock %s was lost (Redis restarted?) and is held again", self.name)
                elif not self.lost:
                    self.lost = True
                    logger.error("the lock %s was lost to another holder while held", self.name)


class _Renewer:
    """The thread that renews every lock this process holds, every third of
    the shortest time to live among them. Started when first needed in a process (a
    forked worker process starts its own)."""

    def __init__(self):
        self._held: dict[int, RenewingLock] = {}
        self._mutex = threading.Lock()
        self._changed = threading.Event()
        self._pid = None

    def hold(self, lock: RenewingLock) -> None:
        with self._mutex:
            self._held[id(lock)] = lock
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="hakobune-lock-renewer", daemon=True).start()
        self._changed.set()

    def drop(self, lock: RenewingLock) -> None:
        with self._mutex:
            self._held.pop(id(lock), None)

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            with self._mutex:
                held = list(self._held.values())
            every = max(min([float(lock.timeout) for lock in held] or [DEPLOY_LOCK_TTL]) / 3, 0.1)
            remaining = last + every - time.monotonic()
            if remaining > 0:
                self._changed.wait(remaining)  # a lock taken meanwhile may be shorter-lived
                self._changed.clear()
                continue
            last = time.monotonic()
            for lock in held:
                try:
                    lock.renew()
                except redis.RedisError as exc:
                    # Redis is away (restarting): try again in a second, so that
                    # the lock is back as soon as Redis is, before anyone else
                    # may take it.
                    logger.warning("could not renew the lock %s: %s", lock.name, exc)
                    last = time.monotonic() - every + 1
                except Exception:  # noqa: BLE001 - the next round tries again
                    logger.exception("could not renew the lock %s", lock.name)


_renewer = _Renewer()


def _forget_in_child() -> None:
    # A forked process holds none of its parent's locks and has no renewing thread yet.
    _renewer._held = {}
    _renewer._mutex = threading.Lock()
    _renewer._changed = threading.Event()
    _renewer._pid = None


os.register_at_fork(after_in_child=_forget_in_child)


def database_scope() -> str:
    """A short name of this platform's database: keys of rows by id (a
    service's lock) are scoped by it, so that two platforms sharing one Redis
    (a test run beside a live one) never hold each other's locks."""
    database = settings.DATABASES["default"]
    where = f"{database.get('HOST', '')}:{database.get('PORT', '')}:{database['NAME']}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def deploy_lock(service_id: int, *, ttl: int = DEPLOY_LOCK_TTL, wait: float | None = None) -> RenewingLock:
    """One deploy (or reconcile, sleep, wake) of a service at a time, across
    every worker. Waits at most `wait` seconds (DEPLOY_LOCK_WAIT) for it; its
    holder renews it while it holds it, so a holder that died blocks nobody
    for longer than `ttl` seconds."""
    wait = settings.DEPLOY_LOCK_WAIT if wait is None else wait
    return redis_client().lock(
        f"hakobune:deploy-lock:{database_scope()}:service:{service_id}", timeout=ttl, blocking_timeout=wait, lock_class=RenewingLock
    )


__all__ = ["DEPLOY_LOCK_TTL", "LockError", "RenewingLock", "database_scope", "deploy_lock", "redis_client"]
