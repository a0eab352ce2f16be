"""What each queue holds and who serves it: depth from the broker (management API or a passive
declare, named in `depth_source`), workers from Celery's inspect, and the oldest waiting request
from the record."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app.observability.depth import Source, depths
from app.orchestration.admission.backlog import backlog
from app.orchestration.celery_app import celery
from app.orchestration.topology import all_queues, work_queue_names
from app.state import session_scope


class WorkerView(BaseModel):
    name: str
    concurrency: int | None
    active: int


class QueueView(BaseModel):
    queue: str
    dead_letter: bool
    depth_source: Source
    ready: int | None
    # None when the source cannot tell (a passive declare knows only ready messages).
    unacked: int | None
    consumers: int | None
    workers: list[WorkerView]
    concurrency: int
    in_flight: int
    # Requests the record has waiting for this queue, and the oldest one's age in seconds (it
    # reached the queue that long ago and has not started); None for dead-letter queues.
    waiting: int | None
    oldest_waiting_s: float | None


def worker_views(timeout: float = 1.5) -> dict[str, list[WorkerView]]:
    """Workers per work queue, with their pool size (max-concurrency) and running tasks."""
    inspector = celery.control.inspect(timeout=timeout)
    queues_of: dict[str, Any] = inspector.active_queues() or {}
    stats: dict[str, Any] = inspector.stats() or {}
    active: dict[str, Any] = inspector.active() or {}
    found: dict[str, list[WorkerView]] = {}
    for worker, consumed in sorted(queues_of.items()):
        view = WorkerView(
            name=worker,
            concurrency=(stats.get(worker) or {}).get("pool", {}).get("max-concurrency"),
            active=len(active.get(worker) or []),
        )
        for q in consumed:
            found.setdefault(q.get("name"), []).append(view)
    return found


def pools(timeout: float = 1.5) -> list[QueueView]:
    names = [q.name for q in all_queues()]
    depth = depths(names)
    workers = worker_views(timeout)
    try:
        with session_scope() as session:
            now = session.scalar(select(func.now()))
            waiting = backlog(session, work_queue_names())
    except SQLAlchemyError:  # the record is unreachable: the broker and workers still answer
        now, waiting = None, {}
    views = []
    for name in names:
        d = depth.queues.get(name)
        w = workers.get(name, [])
        b = waiting.get(name)
        views.append(
            QueueView(
                queue=name,
                dead_letter=name.endswith(".dlq"),
                depth_source=depth.source,
                ready=d.ready if d else None,
                unacked=d.unacked if d else None,
                consumers=d.consumers if d else None,
                workers=w,
                concurrency=sum(x.concurrency or 0 for x in w),
                in_flight=sum(x.active for x in w),
                waiting=b.waiting if b else None,
                oldest_waiting_s=(
                    round((now - b.oldest_since).total_seconds(), 1) if b and b.oldest_since and now else None
                ),
            )
        )
    return views
