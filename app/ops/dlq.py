"""Dead letters: what failed for good, from the record, and the messages RabbitMQ holds for them,
including messages that have no request row (bad submissions, messages from another database)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from kombu import Connection
from kombu.exceptions import KombuError
from pydantic import BaseModel
from sqlalchemy import select

from app.broker_channel import amqp_channel
from app.config import get_settings
from app.ingress.submissions import ERROR_HEADER, REJECTED_AT_HEADER, resubmit
from app.observability import tracing
from app.ops.dead_letter_messages import PEEK_LIMIT, BrokerMessage, peek, remove_messages
from app.orchestration.celery_app import ROUTE_TASK, celery
from app.orchestration.registry import get_specialist
from app.orchestration.topology import (
    PRIORITIES,
    ROUTER_QUEUE,
    SUBMIT_QUEUE,
    dead_lettering_queue_names,
    dlq_name,
)
from app.state import Request, RequestEvent, Status, session_scope
from app.state import transitions as record

log = logging.getLogger(__name__)


class DeadLetter(BaseModel):
    id: str
    tenant: str | None
    queue: str
    specialist: str | None
    attempts: int
    error: str | None
    dead_lettered_at: datetime | None
    # False: only RabbitMQ holds it; no request row says dead_lettered (the id is then the request's
    # if the message names one, else the Celery task id).
    in_record: bool = True
    task: str | None = None


class DeadLetterDetail(DeadLetter):
    text: str
    events: list[dict[str, Any]]
    # For a message only the broker holds: its task's arguments, as sent.
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None


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
        if request is not None and request.status == Status.DEAD_LETTERED:
            events = session.scalars(
                select(RequestEvent).where(RequestEvent.request_id == request_id).order_by(RequestEvent.id)
            ).all()
            return DeadLetterDetail(
                **_view(request).model_dump(),
                text=request.text,
                events=[{"at": e.at.isoformat(), "kind": e.kind, **e.detail} for e in events],
            )
    for dead, message in broker_only():
        if dead.id == request_id:
            text = message.kwargs.get("text")
            return DeadLetterDetail(
                **dead.model_dump(),
                text=text if isinstance(text, str) else "",
                events=[],
                args=message.args,
                kwargs=message.kwargs,
            )
    raise LookupError(f"no dead-lettered request {request_id!r} (see `switchboard dlq list`)")


def _broker_error(message: BrokerMessage, status: str | None, tenant: str | None) -> str:
    queue = message.dlq.removesuffix(".dlq")
    if message.headers.get(ERROR_HEADER):
        return str(message.headers[ERROR_HEADER])
    if tenant is not None and message.routed_for not in (None, tenant):
        return f"the route message names a tenant that is not the request's: rejected from {queue}, never acted on"
    if message.request_id and status is None:
        return f"no request {message.request_id} in the record: rejected from {queue}"
    if status is not None:
        return f"a stale copy: the record says {status} (replayed or finished since)"
    return f"{message.task or 'a message'} with no request id, rejected from {queue}"


def _death_time(headers: dict[str, Any]) -> datetime | None:
    deaths = headers.get("x-death") or [{}]
    raw = headers.get(REJECTED_AT_HEADER) or deaths[0].get("time")
    try:
        return datetime.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None


def broker_only(limit: int = PEEK_LIMIT) -> list[tuple[DeadLetter, BrokerMessage]]:
    """Dead-letter messages that no dead-lettered request row accounts for."""
    messages = peek(dlq_names(), limit)
    ids = {m.request_id for m in messages if m.request_id}
    rows: dict[str, tuple[str, str]] = {}
    if ids:
        with session_scope() as session:
            found_rows = session.execute(
                select(Request.id, Request.status, Request.tenant).where(Request.id.in_(ids))
            ).all()
        rows = {row.id: (row.status, row.tenant) for row in found_rows}
    found = []
    for message in messages:
        status, owner = rows.get(message.request_id, (None, None)) if message.request_id else (None, None)
        if status == Status.DEAD_LETTERED:
            continue
        queue = message.dlq.removesuffix(".dlq")
        tenant = message.kwargs.get("tenant")
        found.append(
            (
                DeadLetter(
                    id=message.id,
                    tenant=tenant if isinstance(tenant, str) else None,
                    queue=queue,
                    specialist=None,
                    attempts=int((message.headers.get("x-death") or [{}])[0].get("count") or 1),
                    error=_broker_error(message, status, owner),
                    dead_lettered_at=_death_time(message.headers),
                    in_record=False,
                    task=message.task,
                ),
                message,
            )
        )
    return found


def dead_letters(limit: int = 1000) -> list[DeadLetter]:
    """`dlq list`: dead-lettered requests from the record, then messages only the broker holds (the
    record's alone, with a warning, while the broker does not answer)."""
    recorded = list_dead_letters(limit)
    try:
        return [*recorded, *(dead for dead, _ in broker_only())]
    except (OSError, KombuError) as exc:
        log.warning(
            "RabbitMQ did not answer (%s): only the record's dead letters are listed", type(exc).__name__
        )
        return recorded


def _republish(request: Request) -> str:
    if request.specialist:
        spec = get_specialist(request.specialist)
        task, queue = spec.task_name, spec.queue
    else:
        task, queue = ROUTE_TASK, ROUTER_QUEUE
    with tracing.resumed(request.traceparent):  # the replay continues the request's own trace
        celery.send_task(
            task, args=[request.id], queue=queue, routing_key=queue, priority=PRIORITIES[request.priority]
        )
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
            replayed[request_id] = _replay_submission(request_id)
            continue
        replayed[request_id] = _republish(request)
    for queue in set(replayed.values()):
        remove_messages(dlq_name(queue), {rid for rid, q in replayed.items() if q == queue})
    return replayed


def _replay_submission(task_id: str) -> str:
    """A submission in submit.dlq goes back to the `submit` queue (to be validated again)."""
    for message in peek([dlq_name(SUBMIT_QUEUE)]):
        if message.task_id == task_id:
            resubmit(message.args, message.kwargs)
            return SUBMIT_QUEUE
    raise LookupError(f"request {task_id!r} is not dead-lettered; nothing to replay")


def replay(request_id: str) -> str:
    return replay_many([request_id])[request_id]


def replay_all() -> dict[str, str]:
    return replay_many([dl.id for dl in list_dead_letters(limit=100_000)])


def purge(queue: str | None = None) -> dict[str, int]:
    """Drop dead letters for good: their messages leave the DLQs; their records stay, as history.
    `queue` names a work queue (`router`) or its dead-letter queue (`router.dlq`)."""
    names = [queue if queue.endswith(".dlq") else dlq_name(queue)] if queue else dlq_names()
    unknown = set(names) - set(dlq_names())
    if unknown:
        raise LookupError(f"no dead-letter queue {min(unknown)!r}; known: {', '.join(dlq_names())}")
    purged: dict[str, int] = {}
    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        for name in names:
            purged[name] = amqp_channel(conn.default_channel).queue_purge(name) or 0
    return purged


def dlq_names() -> list[str]:
    return [dlq_name(q) for q in dead_lettering_queue_names()]
