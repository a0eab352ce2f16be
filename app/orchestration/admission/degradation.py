"""Graceful degradation under load, per queue, by how many requests wait for it (see app/orchestration/admission/backlog.py).

Past a queue's first threshold its pending work runs on the cheap model tier (high priority keeps
its tier: that is what priority is for); past the second, new `low` priority submissions bound for
it are refused with `client.Overloaded`, which carries an estimated wait. Thresholds come from
SWITCHBOARD_DEGRADE_THRESHOLDS (`queue=CHEAP/REFUSE`, `*` for every queue).

Workers ask for every LLM call, so the counts are cached for a second per process: one grouped
query a second, not one per call. When the cache goes stale one thread refreshes it while the
others keep the second-old counts; a whole thread pool querying at once cost a specialist pool a
third of its throughput.
"""

from __future__ import annotations

import threading
import time
from enum import IntEnum

from app.config import get_settings
from app.orchestration.admission.backlog import waiting
from app.state import autocommit_scope

CACHE_S = 1.0


class Level(IntEnum):
    NORMAL = 0
    CHEAP = 1
    REFUSE_LOW = 2


_lock = threading.Lock()
_cached: tuple[float, dict[str, int]] | None = None
_refreshing = False


def thresholds(queue: str) -> tuple[int, int] | None:
    table = get_settings().degrade_thresholds
    return table.get(queue) or table.get("*")


def waiting_counts() -> dict[str, int]:
    """Requests waiting per queue, at most CACHE_S old."""
    global _cached, _refreshing
    with _lock:
        if _cached is not None and (_refreshing or time.monotonic() - _cached[0] < CACHE_S):
            return _cached[1]
        _refreshing = True
    try:
        with autocommit_scope() as conn:  # one read: no transaction around it
            counts = waiting(conn)
        with _lock:
            _cached = (time.monotonic(), counts)
        return counts
    finally:
        with _lock:
            _refreshing = False


def level(queue: str, waiting: int | None = None) -> Level:
    limits = thresholds(queue)
    if limits is None:
        return Level.NORMAL
    n = waiting_counts().get(queue, 0) if waiting is None else waiting
    if n >= limits[1]:
        return Level.REFUSE_LOW
    if n >= limits[0]:
        return Level.CHEAP
    return Level.NORMAL


def reset() -> None:
    global _cached, _refreshing
    with _lock:
        _cached = None
        _refreshing = False
