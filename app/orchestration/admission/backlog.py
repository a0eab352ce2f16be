"""What waits for each queue, as the record sees it: counts, the oldest waiter, how fast the queue
drains, and so when a waiting request should start.

Waiting means published to a queue and not running: `accepted` (and published) waits for the
router; `routed` and `failed` (a retry is scheduled) wait for their specialist. A request waits for
its specialist since `routed_at`, for the router since `accepted_at`. The record, not the broker,
answers these questions because only the record knows which request is which (priority, age).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, case, func, or_, select
from sqlalchemy.orm import Session

from app.orchestration.topology import PRIORITIES, ROUTER_QUEUE
from app.state import Request, Status

# Completions over this window give a queue's drain rate.
RATE_WINDOW_S = 120.0

_WAITING = (Status.ACCEPTED, Status.ROUTED, Status.FAILED)
_QUEUE = case((Request.status == Status.ACCEPTED, ROUTER_QUEUE), else_=Request.specialist)
_SINCE = case((Request.status == Status.ACCEPTED, Request.accepted_at), else_=Request.routed_at)
_RANK = case(*((Request.priority == name, rank) for name, rank in PRIORITIES.items()), else_=0)
_IS_WAITING = and_(
    Request.status.in_(_WAITING),
    or_(Request.status != Status.ACCEPTED, Request.published_at.is_not(None)),
)


@dataclass(frozen=True)
class QueueBacklog:
    queue: str
    waiting: int
    running: int
    oldest_since: datetime | None
    # Requests this queue finished (router: routed) per second over the last RATE_WINDOW_S.
    drain_rps: float
    mean_run_s: float | None

    def rate(self) -> float | None:
        """Measured drain rate, else what the requests running now would give at their usual
        duration; None when nothing says how fast this queue moves."""
        if self.drain_rps > 0:
            return self.drain_rps
        if self.running and self.mean_run_s:
            return self.running / self.mean_run_s
        return None

    def wait_s(self, ahead: int) -> float | None:
        rate = self.rate()
        if rate is None:
            return None
        return round(ahead / rate, 1)


# Built once: every worker runs it every second (app/orchestration/admission/degradation.py).
_WAITING_COUNTS = select(_QUEUE, func.count()).where(_IS_WAITING).group_by(_QUEUE)


def waiting(session: Session | Connection) -> dict[str, int]:
    """Requests waiting per queue (one grouped count on the status index)."""
    return {q: n for q, n in session.execute(_WAITING_COUNTS).all() if q is not None}


def backlog(session: Session, queues: list[str]) -> dict[str, QueueBacklog]:
    now = session.scalar(select(func.now()))
    assert now is not None
    since = now - timedelta(seconds=RATE_WINDOW_S)
    waiting = {
        row.queue: row
        for row in session.execute(
            select(_QUEUE.label("queue"), func.count().label("n"), func.min(_SINCE).label("oldest"))
            .where(_IS_WAITING)
            .group_by(_QUEUE)
        )
    }
    running = dict(
        session.execute(
            select(Request.specialist, func.count())
            .where(Request.status == Status.RUNNING)
            .group_by(Request.specialist)
        ).all()
    )
    finished = {
        row.specialist: row
        for row in session.execute(
            select(
                Request.specialist,
                func.count().label("n"),
                func.avg(func.extract("epoch", Request.finished_at - Request.started_at)).label("mean_s"),
            )
            .where(Request.finished_at > since, Request.status == Status.SUCCEEDED)
            .group_by(Request.specialist)
        )
    }
    routed = session.scalar(select(func.count()).where(Request.routed_at > since)) or 0
    views = {}
    for queue in queues:
        w, f = waiting.get(queue), finished.get(queue)
        is_router = queue == ROUTER_QUEUE
        views[queue] = QueueBacklog(
            queue=queue,
            waiting=w.n if w else 0,
            running=0 if is_router else running.get(queue, 0),
            oldest_since=w.oldest if w else None,
            drain_rps=(routed if is_router else (f.n if f else 0)) / RATE_WINDOW_S,
            mean_run_s=None if is_router or f is None or f.mean_s is None else float(f.mean_s),
        )
    return views


@dataclass(frozen=True)
class Estimate:
    queue: str
    ahead: int
    wait_s: float | None
    start_at: datetime | None


def estimate(session: Session, request: Request) -> Estimate | None:
    """Where a waiting request stands in its queue and when it should start; None if it is not waiting."""
    if request.status not in _WAITING or (request.status == Status.ACCEPTED and request.published_at is None):
        return None
    queue = ROUTER_QUEUE if request.status == Status.ACCEPTED else request.specialist
    if queue is None:
        return None
    mine = PRIORITIES.get(request.priority, 0)
    since = request.accepted_at if queue == ROUTER_QUEUE else request.routed_at
    # RabbitMQ delivers higher priorities first, then oldest first within a priority.
    ahead = (
        session.scalar(
            select(func.count()).where(
                _IS_WAITING,
                _QUEUE == queue,
                Request.id != request.id,
                or_(_RANK > mine, and_(_RANK == mine, _SINCE < since)),
            )
        )
        or 0
    )
    load = backlog(session, [queue])[queue]
    wait = load.wait_s(ahead + 1)
    now = session.scalar(select(func.now()))
    return Estimate(
        queue, ahead, wait, None if wait is None or now is None else now + timedelta(seconds=wait)
    )
