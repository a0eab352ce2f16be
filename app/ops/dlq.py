"""Dead letters: what failed for good, from the record, and the messages RabbitMQ holds for them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kombu import Connection
from pydantic import BaseModel
from sqlalchemy import select

from app import record, tracing
from app.celery_app import ROUTE_TASK, celery
from app.config import get_settings
from app.db import Request, RequestEvent, Status, session_scope
from app.registry import get_specialist
from app.topology import PRIORITIES, ROUTER_QUEUE, dlq_name, work_queue_names


class DeadLetter(BaseModel):
    id: str
    tenant: str
    queue: str
    specialist: str | None
    attempts: int
    error: str | None
    dead_lettered_at: datetime | None


class DeadLetterDetail(DeadLetter):
    text: str
    events: list[dict[str, Any]]


def _queue_of(request: Request) -> str:
    return request.specialist or ROUTER_QUEUE


def _view(request: Request) -> DeadLetter:
    return DeadLetter(
        id=request.id,
        tenant=request.tenant,
        queue=_queue_of(request),
        specialist=request.specialist,
        attempts=request.attempts,
        error=request.error,
        dead_lettered_at=request.dead_lettered_at,
    )


def list_dead_letters(limit: int = 1000) -> list[DeadLetter]:
    with session_scope() as session:
        rows = session.scalars(
            select(Request)
            .where(Request.status == Status.DEAD_LETTERED)
            .order_by(Request.dead_lettered_at.desc())
            .limit(limit)
        ).all()
        return [_view(r) for r in rows]


def show(request_id: str) -> DeadLetterDetail:
    with session_scope() as session:
        request = session.scalar(select(Request).where(Request.id == request_id))
        if request is None or request.status != Status.DEAD_LETTERED:
            raise LookupError(f"no dead-lettered request {request_id!r} (see `switchboard dlq list`)")
        events = session.scalars(
            select(RequestEvent).where(RequestEvent.request_id == request_id).order_by(RequestEvent.id)
        ).all()
        return DeadLetterDetail(
            **_view(request).model_dump(),
            text=request.text,
            events=[{"at": e.at.isoformat(), "kind": e.kind, **e.detail} for e in events],
        )


def _request_id_of(body: bytes) -> str | None:
    try:
        args = json.loads(body)[0]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    return args[0] if args and isinstance(args[0], str) else None


def remove_messages(queue: str, request_ids: set[str]) -> int:
    """Ack the DLQ messages of these requests; every other message goes back untouched."""
    removed = 0
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        channel = conn.channel()
        try:
            while True:
                message = channel.basic_get(queue=queue, no_ack=False)
                if message is None:
                    break
                if _request_id_of(message.body) in request_ids:
                    channel.basic_ack(message.delivery_tag)
                    removed += 1
        finally:
            # Closing the channel returns every message we looked at but did not ack.
            channel.close()
    return removed


def _republish(request: Request) -> str:
    if request.specialist:
        spec = get_specialist(request.specialist)
        task, queue = spec.task_name, spec.queue
    else:
        task, queue = ROUTE_TASK, ROUTER_QUEUE
    with tracing.resumed(request.traceparent):  # the replay continues the request's own trace
        celery.send_task(task, args=[request.id], queue=queue, routing_key=queue,
                         priority=PRIORITIES[request.priority])
    return queue


def replay_many(request_ids: list[str]) -> dict[str, str]:
    """Re-run dead-lettered requests from their last good step; returns each one's queue.

    The record is reset and the task published before the dead letter is removed, so a crash in
    between leaves a stale dead letter (harmless: the record no longer says dead_lettered), never a
    lost request.
    """
    replayed: dict[str, str] = {}
    for request_id in request_ids:
        request = record.reset_for_replay(request_id)
        if request is None:
            raise LookupError(f"request {request_id!r} is not dead-lettered; nothing to replay")
        replayed[request_id] = _republish(request)
    for queue in set(replayed.values()):
        remove_messages(dlq_name(queue), {rid for rid, q in replayed.items() if q == queue})
    return replayed


def replay(request_id: str) -> str:
    return replay_many([request_id])[request_id]


def replay_all() -> dict[str, str]:
    return replay_many([dl.id for dl in list_dead_letters(limit=100_000)])


def purge(queue: str | None = None) -> dict[str, int]:
    """Drop dead letters for good: their messages leave the DLQs; their records stay, as history."""
    names = [dlq_name(queue)] if queue else dlq_names()
    unknown = set(names) - set(dlq_names())
    if unknown:
        raise LookupError(f"no dead-letter queue {sorted(unknown)[0]!r}; known: {', '.join(dlq_names())}")
    purged: dict[str, int] = {}
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        for name in names:
            purged[name] = conn.default_channel.queue_purge(name) or 0
    return purged


def dlq_names() -> list[str]:
    return [dlq_name(q) for q in work_queue_names()]
