"""Finds requests the broker no longer carries and puts them back.

- accepted but never published (a crash or a broker outage between the record and the publish);
- routed, running or failed with no sign of life for longer than the lease (a message lost
  outside Switchboard's control, e.g. a queue deleted by hand): dispatched to its specialist again;
- LLM calls still in flight past the lease (their process died between writing the call's intent
  and completing it): marked in doubt, counted at their estimated cost, their reservations kept.

Safe on several machines at once: rows are claimed with FOR UPDATE SKIP LOCKED, and re-running a
request is safe (checkpointed steps, idempotent side effects, conditional status updates).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, text, update

from app.config import get_settings
from app.observability import tracing
from app.orchestration.celery_app import ROUTE_TASK, celery
from app.orchestration.registry import get_specialist
from app.orchestration.topology import PRIORITIES, ROUTER_QUEUE
from app.state import LlmCall, Request, RequestEvent, Status, autocommit_scope, session_scope
from app.state.transitions import add_event


def _older_than(seconds: float) -> ColumnElement[datetime]:
    return func.now() - text("make_interval(secs => :age)").bindparams(age=seconds)


def republish_unpublished(min_age_s: float = 30.0, batch: int = 500) -> int:
    """Publish accepted requests older than `min_age_s` with no publish recorded; returns how many."""
    with session_scope() as session:
        rows = session.execute(
            select(Request.id, Request.priority, Request.traceparent)
            .where(
                Request.published_at.is_(None),
                Request.status == Status.ACCEPTED,
                Request.accepted_at < _older_than(min_age_s),
            )
            .order_by(Request.accepted_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            with tracing.resumed(row.traceparent):  # the request's own trace, not the reconciler's
                celery.send_task(
                    ROUTE_TASK,
                    args=[row.id],
                    queue=ROUTER_QUEUE,
                    routing_key=ROUTER_QUEUE,
                    priority=PRIORITIES[row.priority],
                )
            session.execute(update(Request).where(Request.id == row.id).values(published_at=func.now()))
    return len(rows)


def redispatch_stale(lease_s: float | None = None, batch: int = 500) -> int:
    """Send again requests with no event for longer than the lease; returns how many.

    Published but never routed goes back to the router; routed, running or failed goes to its
    specialist as a take-over. The lease defaults to the task time limit plus a margin: by then
    Celery has ended any attempt that was still running, so a request is never taken from a live
    worker."""
    settings = get_settings()
    lease = lease_s if lease_s is not None else settings.task_time_limit_s + 60
    alive = exists().where(and_(RequestEvent.request_id == Request.id, RequestEvent.at > _older_than(lease)))
    with session_scope() as session:
        rows = session.execute(
            select(Request.id, Request.priority, Request.specialist, Request.status, Request.traceparent)
            .where(
                or_(
                    and_(
                        Request.status.in_([Status.ROUTED, Status.RUNNING, Status.FAILED]),
                        Request.specialist.isnot(None),
                    ),
                    and_(Request.status == Status.ACCEPTED, Request.published_at.isnot(None)),
                ),
                ~alive,
            )
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            if row.status == Status.ACCEPTED:
                task, queue, kwargs = ROUTE_TASK, ROUTER_QUEUE, {}
            else:
                spec = get_specialist(row.specialist)
                task, queue, kwargs = spec.task_name, spec.queue, {"reclaim": True}
            with tracing.resumed(row.traceparent):
                celery.send_task(
                    task,
                    args=[row.id],
                    kwargs=kwargs,
                    queue=queue,
                    routing_key=queue,
                    priority=PRIORITIES[row.priority],
                )
            add_event(session, row.id, "redispatched", lease_s=lease)
    return len(rows)


def mark_in_doubt(lease_s: float | None = None) -> int:
    """Mark LLM calls in flight for longer than the lease as in doubt; returns how many.

    The provider may have answered (and billed) a call whose process then died, so its estimated
    cost stays reserved against the request and the tenant's day, and reports count it as in
    doubt. A completion that still arrives (a slow process, not a dead one) completes it as usual.
    The lease defaults to the task time limit plus a margin, like `redispatch_stale`'s."""
    settings = get_settings()
    lease = lease_s if lease_s is not None else settings.task_time_limit_s + 60
    with autocommit_scope() as conn:  # one statement: it commits by itself
        marked = conn.execute(
            update(LlmCall)
            .where(LlmCall.outcome == "in_flight", LlmCall.created_at < _older_than(lease))
            .values(
                outcome="in_doubt",
                error=f"no completion within {lease:g}s: the process making the call ended",
            )
        )
    return marked.rowcount
