"""Build admission: a deploy is recorded as a queued build, and builds are let
into the pipeline here, a bounded number at a time and fairly between teams.

A build takes a slot while it fetches, detects or builds (`ADMITTED`); at most
`settings.BUILD_CONCURRENCY` builds hold one at once, so twenty deploys at
once on two cores do not run twenty compilers side by side. A free slot goes
to the team with the fewest builds in progress, then to the team served
longest ago, then to its oldest build (`fair_order`): teams take turns, and
one team's twenty deploys do not keep another's one waiting behind them all.

`admit_builds` is asked after every accepted deploy, whenever a build leaves
its slot, and by the scheduler every few seconds as a safety net: the queued
builds are rows in the database, so a Redis restart that lost the requests
loses no build. Admitting is a conditional UPDATE (queued → fetching), so two
dispatchers never admit one build twice; one dispatcher at a time counts the
slots (a short Redis lock), so two never fill the same free slot."""

from __future__ import annotations

import heapq
import logging
from collections import Counter, deque
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from hakobune.platform import queue
from hakobune.platform.locks import database_scope, redis_client

from .models import ADMITTED, Build, BuildStatus
from .state import advance

logger = logging.getLogger(__name__)
S = BuildStatus

# The most queued builds one pass looks at.
SCAN_LIMIT = 1000
# An admitted build whose fetch was not taken up by a worker this long (its
# request lost with Redis) is asked for again.
UNCLAIMED_SECONDS = 60


def fair_order(queued: list[tuple[int, int]], in_progress: dict[int, int],
               last_admitted: dict[int, float] | None = None) -> list[int]:
    """The order queued builds are admitted in: `queued` is (build id, team
    id), oldest first; `in_progress` the builds each team has in the
    pipeline; `last_admitted` when each team last had a build admitted
    (a timestamp; never: none). Each pick goes to the team with the fewest in
    progress (counting the ones picked before it); between teams with as many,
    to the one served longest ago (so teams take turns, whoever deployed
    first); then to the team's oldest build."""
    waiting: dict[int, deque[int]] = {}
    for build_id, team_id in queued:
        waiting.setdefault(team_id, deque()).append(build_id)
    served = dict(last_admitted or {})
    heap = [(in_progress.get(team_id, 0), served.get(team_id, float("-inf")), builds[0], team_id)
            for team_id, builds in waiting.items()]
    heapq.heapify(heap)
    clock = max([0.0, *served.values()])
    order = []
    while heap:
        count, _, build_id, team_id = heapq.heappop(heap)
        order.append(build_id)
        clock += 1
        builds = waiting[team_id]
        builds.popleft()
        if builds:
            heapq.heappush(heap, (count + 1, clock, builds[0], team_id))
    return order


def _last_admitted(team_ids) -> dict[int, float]:
    rows = (Build.objects.filter(service__team_id__in=set(team_ids), started_at__isnull=False)
            .values("service__team_id").annotate(last=Max("started_at")))
    return {row["service__team_id"]: row["last"].timestamp() for row in rows}


def _order(queued: list[tuple[int, int]], in_progress: dict[int, int]) -> list[int]:
    return fair_order(queued, in_progress, _last_admitted(team_id for _, team_id in queued))


def slots() -> int:
    """How many builds may be in the pipeline at once (at least one)."""
    return max(1, settings.BUILD_CONCURRENCY)


def _in_progress_by_team() -> Counter:
    return Counter(Build.objects.filter(status__in=ADMITTED).values_list("service__team_id", flat=True))


def _queued() -> list[tuple[int, int]]:
    return list(
        Build.objects.filter(status=S.QUEUED).order_by("id").values_list("id", "service__team_id")[:SCAN_LIMIT]
    )


def queue_positions() -> dict[int, int]:
    """{queued build id: how many queued builds go before it}, as admission
    stands now (a build ending elsewhere may change it)."""
    return {build_id: ahead for ahead, build_id in enumerate(_order(_queued(), _in_progress_by_team()))}


def waiting_ahead(build: Build) -> int | None:
    """How many builds go before this queued one, or None when it is not
    waiting in the queue."""
    if build.status != S.QUEUED:
        return None
    return queue_positions().get(build.id)


@contextmanager
def _dispatcher_lock():
    """One dispatcher at a time for this platform's database. Yields whether
    it got the lock (a busy dispatcher is waited for a few seconds; the next
    pass, at the latest the scheduler's, does the rest)."""
    lock = redis_client().lock(f"hakobune:build-dispatcher:{database_scope()}", timeout=60, blocking_timeout=10)
    got = lock.acquire()
    try:
        yield got
    finally:
        if got:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - it expired meanwhile; nothing to give back
                pass


def admit_builds() -> list[int]:
    """Admits queued builds while fewer than BUILD_CONCURRENCY are in the
    pipeline, fairly per team; sends each admitted one's first step (once
    the dispatcher's lock is given back). Returns the ids admitted."""
    admitted: list[int] = []
    with _dispatcher_lock() as got:
        if not got:
            return admitted
        again = _unclaimed_to_ask_again()
        in_progress = _in_progress_by_team()
        free = slots() - sum(in_progress.values())
        if free > 0:
            for build_id in _order(_queued(), in_progress):
                if len(admitted) >= free:
                    break
                # The claim: a build cancelled or superseded meanwhile is not admitted.
                if advance(build_id, S.QUEUED, S.FETCHING):
                    admitted.append(build_id)
    if admitted:
        logger.info("admitted builds %s (%s were in progress)", admitted, sum(in_progress.values()))
    for build_id in again + admitted:
        queue.enqueue("fetch_source", build_id)
    return admitted


def _unclaimed_to_ask_again() -> list[int]:
    """Admitted builds that no worker took up for a minute: their request was
    lost (Redis restarted) and is sent again. The step's claim makes a
    duplicate request harmless."""
    cutoff = timezone.now() - timedelta(seconds=UNCLAIMED_SECONDS)
    again = []
    for build_id in Build.objects.filter(
        status=S.FETCHING, claimed_step="", status_changed_at__lt=cutoff
    ).values_list("id", flat=True)[:SCAN_LIMIT]:
        # Once a minute at most: a request still waiting behind others is not doubled every pass.
        if Build.objects.filter(id=build_id, status=S.FETCHING, claimed_step="",
                                status_changed_at__lt=cutoff).update(status_changed_at=timezone.now()):
            logger.warning("build %s was admitted but never taken up; asking for its fetch again", build_id)
            again.append(build_id)
    return again


def admit_one(build_id: int) -> bool:
    """Admits this queued build, claiming its fetch for the caller, if a slot
    is free: for a fetch asked for a build still queued (a request sent before
    admission existed, or a test driving the pipeline step by step)."""
    with _dispatcher_lock() as got:
        if not got or sum(_in_progress_by_team().values()) >= slots():
            return False
        return advance(build_id, S.QUEUED, S.FETCHING, claimed_step=S.FETCHING)
