"""Publishes requests that were written but never reached the broker.

Safe on several machines at once: rows are claimed with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

from sqlalchemy import func, select, text, update

from app.celery_app import ROUTE_TASK, celery
from app.db import Request, Status, session_scope
from app.topology import PRIORITIES, ROUTER_QUEUE


def republish_unpublished(min_age_s: float = 30.0, batch: int = 500) -> int:
    """Publish accepted requests older than `min_age_s` with no publish recorded; returns how many."""
    with session_scope() as session:
        rows = session.execute(
            select(Request.id, Request.priority)
            .where(
                Request.published_at.is_(None),
                Request.status == Status.ACCEPTED,
                Request.accepted_at < func.now() - text("make_interval(secs => :age)").bindparams(age=min_age_s),
            )
            .order_by(Request.accepted_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            celery.send_task(
                ROUTE_TASK, args=[row.id], queue=ROUTER_QUEUE, routing_key=ROUTER_QUEUE,
                priority=PRIORITIES[row.priority],
            )
            session.execute(update(Request).where(Request.id == row.id).values(published_at=func.now()))
    return len(rows)
