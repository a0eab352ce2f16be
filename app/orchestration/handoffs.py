"""The human queue: requests handed to a person, the inbox they wait in, and the reply that finishes them.

A request gets here from a workflow step (`ctx.handoff(reason)`: the customer asked for a person,
or the model called `handoff_to_human`), from an approval that waited past its deadline, or, with
SWITCHBOARD_HANDOFF_ON_FAILURE, from a failure retries cannot fix. `reply` records the person's
text as the request's result, in the shape an agent's result has (`reply`, `tool_calls`, plus
`by`), marks it succeeded and delivers it like any other: one delivery row, the callback if the
request has one, the conversation's history.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Connection, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert

from app.config import get_settings
from app.observability import metrics
from app.orchestration import callbacks
from app.state import Callback, Delivery, Handoff, Request, Status, connection_scope, session_scope
from app.state import transitions as record
from app.state.transitions import RequestNotFound

log = logging.getLogger(__name__)


class InboxItem(BaseModel):
    id: str
    tenant: str
    specialist: str | None
    priority: str
    text: str
    source: str
    reason: str
    accepted_at: datetime
    handed_off_at: datetime
    waiting_s: float
    sla_s: float
    sla_breached: bool


def queue_for_person(conn: Connection, request_id: str, source: str, reason: str) -> None:
    """The handoff row of a request just moved to needs_human (in the same transaction)."""
    conn.execute(
        insert(Handoff)
        .values(request_id=request_id, source=source, reason=reason)
        .on_conflict_do_update(
            index_elements=[Handoff.request_id],
            set_={
                "source": source,
                "reason": reason,
                "requested_at": func.now(),
                "replied_by": None,
                "replied_at": None,
            },
        )
    )
    metrics.HANDOFFS.labels(source).inc()


def open_handoff(conn: Connection, request_id: str, source: str, reason: str) -> None:
    """Inside a running step's checkpoint: the request goes to the human queue."""
    if record.hand_off(conn, request_id, {"source": source, "reason": reason}) is not None:
        queue_for_person(conn, request_id, source, reason)


def hand_off_failed(request_id: str, error: str) -> bool:
    """A failure retries cannot fix goes to people instead of the dead-letter queue; False if the
    request was not in an unfinished status."""
    with connection_scope() as conn:
        moved = record.hand_off(conn, request_id, {"source": "failure", "reason": error}, error=error)
        if moved is not None:
            queue_for_person(conn, request_id, "failure", error)
    return moved is not None


def inbox(tenant: str | None = None) -> list[InboxItem]:
    """Requests waiting for a person, longest-waiting first, with their wait against the SLA."""
    sla = get_settings().human_sla_s
    query = (
        select(
            Request.id,
            Request.tenant,
            Request.specialist,
            Request.priority,
            Request.text,
            Request.accepted_at,
            Handoff.source,
            Handoff.reason,
            Handoff.requested_at,
            func.extract("epoch", func.now() - Handoff.requested_at).label("waiting_s"),
        )
        .join(Handoff, Handoff.request_id == Request.id)
        .where(Request.status == Status.NEEDS_HUMAN)
        .order_by(Handoff.requested_at)
    )
    if tenant is not None:
        query = query.where(Request.tenant == tenant)
    with session_scope() as session:
        rows = session.execute(query).all()
    return [
        InboxItem(
            id=r.id,
            tenant=r.tenant,
            specialist=r.specialist,
            priority=r.priority,
            text=r.text,
            source=r.source,
            reason=r.reason,
            accepted_at=r.accepted_at,
            handed_off_at=r.requested_at,
            waiting_s=round(float(r.waiting_s), 3),
            sla_s=sla,
            sla_breached=float(r.waiting_s) > sla,
        )
        for r in rows
    ]


def reply(request_id: str, text: str, *, by: str, tenant: str | None = None) -> dict[str, object]:
    """Answer a request in the human queue: its result becomes `{"reply": text, "by": by,
    "tool_calls": []}`, it succeeds, and it is delivered and called back. With `tenant`, another
    tenant's request is not found; one not waiting for a person raises NotWaiting."""
    text = text.strip()
    if not text:
        raise ValueError("the reply must not be empty")
    limit = get_settings().max_text_bytes
    if len(text.encode("utf-8", errors="surrogatepass")) > limit:
        raise ValueError(f"the reply is longer than {limit} bytes (SWITCHBOARD_MAX_TEXT_BYTES)")
    result: dict[str, object] = {"reply": text, "by": by, "tool_calls": []}
    with session_scope() as session:
        query = select(Request.status).where(Request.id == request_id)
        if tenant is not None:
            query = query.where(Request.tenant == tenant)
        status = session.scalar(query.with_for_update())
        if status is None:
            raise RequestNotFound(f"no request {request_id!r}")
        conn = session.connection()
        if (
            status != Status.NEEDS_HUMAN
            or record.finish_by_person(conn, request_id, result, {"by": by}) is None
        ):
            raise record.NotWaiting(request_id, status, Status.NEEDS_HUMAN)
        session.execute(
            update(Handoff)
            .where(Handoff.request_id == request_id)
            .values(replied_by=by, replied_at=func.now())
        )
        session.execute(
            insert(Delivery)
            .values(request_id=request_id, channel="human", body=text)
            .on_conflict_do_nothing(index_elements=[Delivery.request_id])
        )
        callback_pending = bool(
            session.scalar(
                select(exists().where(Callback.request_id == request_id, Callback.status == "pending"))
            )
        )
    metrics.HUMAN_REPLIES.inc()
    log.info("request %s answered by %s", request_id, by)
    if callback_pending:
        callbacks.enqueue(request_id)
    return {"id": request_id, "status": Status.SUCCEEDED, "result": result}
