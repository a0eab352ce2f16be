"""Status transitions of a request and its event log, each in its own short transaction.

Transitions are conditional UPDATEs, so a redelivered or duplicated message cannot move a request
backwards or finish it twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    DateTime,
    Float,
    Integer,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CTE

from app.errors import StateError
from app.request_scope import current
from app.state import (
    Callback,
    Request,
    RequestEvent,
    Status,
    StepRun,
    autocommit_scope,
    conversations,
    session_scope,
    table_of,
)

# The transitions every request makes are Core statements built once, on bare connections: the
# ORM session and statement building cost more CPU than the round trips, and a worker process
# runs hundreds of these a second. A transition and its event are one statement (a data-modifying
# CTE), so the transitions outside a step's checkpoint commit on their own in one round trip.
_R = table_of(Request)
_S = table_of(StepRun)
_E = table_of(RequestEvent)
_INSERT_EVENT = insert(_E)
_RID: BindParameter[str] = bindparam("rid")


def _with_event(transition: CTE, kind: str, detail: Any) -> CTE:
    """The event `kind` for each row `transition` changed (none if it changed none)."""
    return (
        insert(_E)
        .from_select(
            ["request_id", "kind", "detail"], select(transition.c.id, literal_column(f"'{kind}'"), detail)
        )
        .cte(f"{kind}_event")
    )


_ROUTED = (
    update(_R)
    # The tenant too: a route message carries its own (the router skips reading the row), and a
    # message whose tenant is not the row's must route nothing, whoever published it.
    .where(_R.c.id == _RID, _R.c.status == Status.ACCEPTED, _R.c.tenant == bindparam("route_tenant"))
    .values(
        status=Status.ROUTED,
        specialist=bindparam("specialist"),
        route_confidence=bindparam("confidence"),
        route_method=bindparam("method"),
        routed_at=func.now(),
        # When the router took it, on the database's clock: given (read then), or so many seconds
        # before this statement (the router took it from its message without reading it).
        route_started_at=func.coalesce(
            bindparam("route_started_at", type_=DateTime(timezone=True)),
            func.now() - func.make_interval(0, 0, 0, 0, 0, 0, bindparam("taken_s_ago", type_=Float)),
        ),
        db_ms=_R.c.db_ms + bindparam("db_ms"),
    )
    .returning(_R.c.id)
    .cte("routed")
)
_ROUTED_EVENT = _with_event(_ROUTED, "routed", bindparam("detail", type_=JSONB))
# Always one row, so a request that is not in the record (a message from another database), or
# not the message's tenant's, is told from one routed already (a duplicate message) in the same
# round trip.
_OWNER = select(_R.c.tenant).where(_R.c.id == _RID)
_KNOWN = _OWNER.scalar_subquery().label("owner")
_MARK_ROUTED = select(select(_ROUTED.c.id).scalar_subquery().label("id"), _KNOWN).add_cte(_ROUTED_EVENT)

# A tenant's requests holding a place at their specialist: what fair share counts (fairness.py).
IN_SPECIALIST = (Status.ROUTED, Status.RUNNING, Status.FAILED)
_R2 = _R.alias("others")


def unfinished_at(tenant: Any, specialist: Any, cap: Any) -> Any:
    """How many of the tenant's requests hold a place at the specialist, counted up to `cap`:
    fair share asks only whether there are more than its share, and a burst's hundreds of rows
    need not be visited to say so (with a full count, the router's decision statement took 2.5 ms
    in PostgreSQL with a few hundred of one tenant's requests in flight)."""
    held = (
        select(literal_column("1"))
        .select_from(_R2)
        .where(_R2.c.tenant == tenant, _R2.c.specialist == specialist, _R2.c.status.in_(IN_SPECIALIST))
        .limit(cap)
        .subquery()
    )
    return select(func.count()).select_from(held).scalar_subquery()


# _MARK_ROUTED, plus the tenant's unfinished requests at the chosen specialist, this one included and
# counted up to the fair share + 1, for the dispatch priority: one round trip where a separate
# count would be a second. The statement reads the snapshot before its own update, in which this
# request is still `accepted`.
_MARK_ROUTED_COUNTED = select(
    select(_ROUTED.c.id).scalar_subquery().label("id"),
    _KNOWN,
    (
        unfinished_at(
            bindparam("route_tenant"), bindparam("specialist"), bindparam("count_cap", type_=Integer)
        )
        + 1
    ).label("unfinished"),
).add_cte(_ROUTED_EVENT)

# What the router needs of an accepted request, and when it took it (the database's clock).
_FOR_ROUTING = select(
    _R.c.status, _R.c.text, _R.c.priority, _R.c.conversation_id, _R.c.tenant, func.now().label("now")
).where(_R.c.id == _RID)

_CLAIM_COLUMNS = (
    _R.c.attempts,
    _R.c.tenant,
    _R.c.customer,
    _R.c.text,
    _R.c.priority,
    _R.c.specialist,
    _R.c.conversation_id,
    _R.c.route_confidence,
)


# The finished steps' outputs, {step: output}, for a claimed attempt to resume after.
_CHECKPOINTS = (
    select(
        func.coalesce(
            func.jsonb_object_agg(_S.c.step, func.coalesce(_S.c.output, literal_column("'{}'::jsonb"))),
            literal_column("'{}'::jsonb"),
            type_=JSONB,
        )
    )
    .where(_S.c.request_id == _RID, _S.c.status == "succeeded")
    .scalar_subquery()
)

# The parked steps' resumable states, {step: state}, beside the checkpoints.
_PARKED = (
    select(
        func.coalesce(
            func.jsonb_object_agg(_S.c.step, _S.c.output), literal_column("'{}'::jsonb"), type_=JSONB
        )
    )
    .where(_S.c.request_id == _RID, _S.c.status == "parked", _S.c.output.is_not(None))
    .scalar_subquery()
)


def _claim(statuses: tuple[Status, ...]) -> Any:
    claimed = (
        update(_R)
        .where(_R.c.id == _RID, _R.c.status.in_(statuses))
        .values(
            status=Status.RUNNING,
            attempts=_R.c.attempts + 1,
            started_at=func.coalesce(_R.c.started_at, func.now()),
        )
        .returning(_R.c.id, *_CLAIM_COLUMNS)
        .cte("claimed")
    )
    event = _with_event(
        claimed, "attempt_started", func.jsonb_build_object(literal_column("'attempt'"), claimed.c.attempts)
    )
    return select(
        *(claimed.c[c.name] for c in _CLAIM_COLUMNS),
        _CHECKPOINTS.label("checkpoints"),
        _PARKED.label("parked"),
    ).add_cte(event)


_CLAIM = _claim((Status.ROUTED, Status.FAILED))
_TAKE_OVER = _claim((Status.ROUTED, Status.FAILED, Status.RUNNING))

_SUCCEEDED = (
    update(_R)
    .where(_R.c.id == _RID, _R.c.status == Status.RUNNING)
    .values(
        status=Status.SUCCEEDED,
        result=bindparam("result"),
        error=None,
        finished_at=func.now(),
        db_ms=_R.c.db_ms + bindparam("db_ms"),
    )
    .returning(_R.c.id)
    .cte("succeeded")
)
_CALLBACK_PENDING = exists().where(Callback.request_id == _RID, Callback.status == "pending")
_MARK_SUCCEEDED = select(_SUCCEEDED.c.id, _CALLBACK_PENDING.label("callback_pending")).add_cte(
    _with_event(_SUCCEEDED, "succeeded", literal_column("'{}'::jsonb"))
)


def add_event(conn: Session | Connection, request_id: str, kind: str, **detail: Any) -> None:
    # A Core insert, not session.add: events are written on every transition of every request.
    conn.execute(_INSERT_EVENT, {"request_id": request_id, "kind": kind, "detail": detail})


def _db_ms() -> float:
    """The bound request's database time so far, added to the record by the write that ends a task."""
    scope = current()
    return scope.db_ms if scope else 0.0


@dataclass(frozen=True)
class ForRouting:
    status: str
    text: str
    priority: str
    conversation_id: str | None
    tenant: str
    taken_at: datetime  # when the router read it, on the database's clock like every other stage


def for_routing(request_id: str) -> ForRouting | None:
    """The request as the router needs it; None if the record has no such request. One
    self-committing read: no transaction around it."""
    with autocommit_scope() as conn:
        row = conn.execute(_FOR_ROUTING, {"rid": request_id}).first()
    return None if row is None else ForRouting(*row)


def _check_owner(request_id: str, owner: str | None, tenant: str) -> None:
    if owner is None:
        raise RequestNotFound(f"no request {request_id} in the record")
    if owner != tenant:
        raise TenantMismatch(f"the route message for {request_id} names a tenant that is not the request's")


def confirm_tenant(request_id: str, tenant: str) -> None:
    """Raise RequestNotFound or TenantMismatch unless `tenant` owns the request: what the router
    checks before it spends anything on a route message's word (the fallback LLM call, charged to
    that tenant). The routed write checks the same for every message, in its own statement."""
    with autocommit_scope() as conn:
        owner = conn.execute(_OWNER, {"rid": request_id}).scalar()
    _check_owner(request_id, owner, tenant)


def mark_routed(
    request_id: str,
    specialist: str,
    confidence: float,
    method: str,
    route_started_at: datetime | None = None,
    *,
    tenant: str,
    count_unfinished: int = 0,
    taken_s_ago: float = 0.0,
) -> int | None:
    """Record the routing decision; None if the request was routed already (a redelivery), else
    the tenant's unfinished requests at `specialist`, this one included, counted up to
    `count_unfinished` + 1 (0 without: none counted). When the router took the request:
    `route_started_at` (the database's clock) or `taken_s_ago` seconds before this write. Raises
    RequestNotFound when the record has no such request, TenantMismatch when `tenant` (what the
    route message says) is not the request's."""
    with autocommit_scope() as conn:
        routed = conn.execute(
            _MARK_ROUTED_COUNTED if count_unfinished else _MARK_ROUTED,
            {
                "rid": request_id,
                "route_tenant": tenant,
                "specialist": specialist,
                "confidence": confidence,
                "method": method,
                "route_started_at": route_started_at,
                "taken_s_ago": max(0.0, taken_s_ago),
                "count_cap": count_unfinished,
                "db_ms": _db_ms(),
                "detail": {"specialist": specialist, "confidence": confidence, "method": method},
            },
        ).one()
    _check_owner(request_id, routed.owner, tenant)
    if routed.id is None:
        return None
    return int(routed.unfinished) if count_unfinished else 0


@dataclass(frozen=True)
class Attempt:
    number: int
    tenant: str
    customer: str | None
    text: str
    priority: str
    specialist: str
    conversation_id: str | None
    route_confidence: float | None
    # Outputs of the workflow steps that already succeeded (a redelivered task resumes after them).
    checkpoints: dict[str, dict[str, Any]]
    # States of steps parked mid-way (waiting for an approval), which resume from them.
    parked: dict[str, dict[str, Any]] = field(default_factory=dict)


def start_attempt(request_id: str, *, take_over: bool = False) -> Attempt | None:
    """Claim the request for one more attempt; None if it is finished, or running and this is not
    a take-over (`take_over`: the previous attempt's worker is gone)."""
    with autocommit_scope() as conn:
        row = conn.execute(_TAKE_OVER if take_over else _CLAIM, {"rid": request_id}).first()
    if row is None:
        return None
    return Attempt(
        row.attempts,
        row.tenant,
        row.customer,
        row.text,
        row.priority,
        row.specialist,
        row.conversation_id,
        row.route_confidence,
        row.checkpoints,
        row.parked,
    )


def mark_succeeded(conn: Connection, request_id: str, result: dict[str, Any], attempt: Attempt) -> bool:
    """Finish the request inside `conn`'s transaction (the workflow's last checkpoint). True if
    this attempt finished it and a callback waits to be delivered."""
    done = conn.execute(_MARK_SUCCEEDED, {"rid": request_id, "result": result, "db_ms": _db_ms()}).first()
    if not done:
        return False  # taken over by another attempt, which finishes it
    if attempt.conversation_id:
        conversations.append_exchange(
            conn,
            attempt.tenant,
            attempt.conversation_id,
            request_id,
            attempt.text,
            result.get("reply", ""),
            attempt.specialist,
        )
    return bool(done.callback_pending)


def mark_failed(request_id: str, error: str, *, attempt: int, retry_in_s: float) -> None:
    """Record a failed attempt with a retry scheduled. Only a specialist attempt becomes `failed`;
    a request that failed in the router keeps its status so the router routes it on retry."""
    with session_scope() as session:
        session.execute(
            update(Request)
            .where(Request.id == request_id)
            .values(
                status=case((Request.status == Status.RUNNING, Status.FAILED), else_=Request.status),
                error=error,
                db_ms=Request.db_ms + _db_ms(),
            )
        )
        add_event(session, request_id, "attempt_failed", attempt=attempt, error=error, retry_in_s=retry_in_s)


def mark_deferred(request_id: str, reason: str, *, retry_in_s: float) -> None:
    """The attempt is handed back unspent: the provider cannot take it now (breaker open or rate
    limit saturated), which is not the request's fault."""
    with session_scope() as session:
        session.execute(
            update(Request)
            .where(Request.id == request_id, Request.status == Status.RUNNING)
            .values(status=Status.ROUTED, attempts=Request.attempts - 1, db_ms=Request.db_ms + _db_ms())
        )
        add_event(session, request_id, "deferred", reason=reason, retry_in_s=round(retry_in_s, 2))


def mark_dead_lettered(request_id: str, error: str, *, queue: str) -> None:
    with session_scope() as session:
        session.execute(
            update(Request)
            .where(Request.id == request_id, Request.status != Status.SUCCEEDED)
            .values(
                status=Status.DEAD_LETTERED,
                error=error,
                dead_lettered_at=func.now(),
                finished_at=func.now(),
                db_ms=Request.db_ms + _db_ms(),
            )
        )
        add_event(session, request_id, "dead_lettered", queue=queue, error=error)


def reset_for_replay(request_id: str) -> Request | None:
    """Make a dead-lettered request runnable again; its finished steps stay checkpointed.

    A request that never got a specialist goes back to the router, the rest straight to their
    specialist. Returns the request as reset, or None if it was not dead-lettered.
    """
    with session_scope() as session:
        request = session.scalar(
            select(Request)
            .where(Request.id == request_id, Request.status == Status.DEAD_LETTERED)
            .with_for_update()
        )
        if request is None:
            return None
        request.status = Status.ROUTED if request.specialist else Status.ACCEPTED
        request.attempts = 0
        request.error = None
        request.finished_at = None
        add_event(session, request_id, "replayed", to=request.specialist or "router")
        return request


# --- Waiting on a person: approvals and the human queue ------------------------------------------
# Each is one conditional statement with its event, like the transitions above; the approval or
# handoff row it concerns is written in the same transaction by the caller (app/orchestration/approvals.py,
# app/orchestration/handoffs.py, workflows/engine.py).


class RequestNotFound(StateError, LookupError):
    """No such request in the record (or not the asking tenant's)."""


class TenantMismatch(StateError):
    """A message names a tenant that is not its request's: forged or corrupt, never acted on."""


class NotWaiting(StateError):
    """The request is not in the status a person's action needs; `status` is the one it is in."""

    def __init__(self, request_id: str, status: str, needed: str) -> None:
        super().__init__(f"request {request_id} is {status}, not {needed}")
        self.status = status


_MOVED_COLUMNS = (_R.c.id, _R.c.tenant, _R.c.specialist, _R.c.priority, _R.c.conversation_id, _R.c.text)


def _move(kind: str, from_: tuple[Status, ...], to: Status, **values: Any) -> Any:
    """Move the request `_RID` from one of `from_` to `to`, with the event `kind` (detail: the
    `detail` parameter); returns the moved row, or nothing if it was in another status."""
    moved = (
        update(_R)
        .where(_R.c.id == _RID, _R.c.status.in_(from_))
        .values(status=to, **values)
        .returning(*_MOVED_COLUMNS)
        .cte(kind)
    )
    return select(*(moved.c[c.name] for c in _MOVED_COLUMNS)).add_cte(
        _with_event(moved, kind, bindparam("detail", type_=JSONB))
    )


_ADD_DB_MS = {"db_ms": _R.c.db_ms + bindparam("db_ms")}
_PARK = _move("awaiting_approval", (Status.RUNNING,), Status.AWAITING_APPROVAL, **_ADD_DB_MS)
_HAND_OFF = _move("handed_off", (Status.RUNNING,), Status.NEEDS_HUMAN, **_ADD_DB_MS)
# A failure retries cannot fix, routed to people instead of the dead-letter queue; it may have
# happened in the router (accepted) or between attempts.
_HAND_OFF_FAILED = _move(
    "handed_off",
    (Status.ACCEPTED, Status.ROUTED, Status.RUNNING, Status.FAILED),
    Status.NEEDS_HUMAN,
    error=bindparam("error"),
    **_ADD_DB_MS,
)
_ESCALATE = _move("approval_escalated", (Status.AWAITING_APPROVAL,), Status.NEEDS_HUMAN)
# Back to its specialist's queue: the parked step resumes with the decision.
_APPROVED = _move("approved", (Status.AWAITING_APPROVAL,), Status.ROUTED)
_REJECTED = _move("rejected", (Status.AWAITING_APPROVAL,), Status.ROUTED)
_REPLIED = _move(
    "human_replied",
    (Status.NEEDS_HUMAN,),
    Status.SUCCEEDED,
    result=bindparam("result"),
    error=None,
    finished_at=func.now(),
)


def park(conn: Connection, request_id: str, detail: dict[str, Any]) -> Any:
    """running -> awaiting_approval inside `conn`'s transaction (the step's checkpoint); the moved
    row, or None if another attempt owns the request now."""
    return conn.execute(_PARK, {"rid": request_id, "detail": detail, "db_ms": _db_ms()}).first()


def hand_off(conn: Connection, request_id: str, detail: dict[str, Any], *, error: str | None = None) -> Any:
    """-> needs_human inside `conn`'s transaction: from running (a step handed over), or with
    `error` from any unfinished status (a failure retries cannot fix). The moved row or None."""
    if error is None:
        return conn.execute(_HAND_OFF, {"rid": request_id, "detail": detail, "db_ms": _db_ms()}).first()
    return conn.execute(
        _HAND_OFF_FAILED, {"rid": request_id, "detail": detail, "error": error, "db_ms": _db_ms()}
    ).first()


def escalate(conn: Connection, request_id: str, detail: dict[str, Any]) -> Any:
    """awaiting_approval -> needs_human (the approval waited past its deadline); the row or None."""
    return conn.execute(_ESCALATE, {"rid": request_id, "detail": detail}).first()


def resume_decided(conn: Connection, request_id: str, *, approved: bool, detail: dict[str, Any]) -> Any:
    """awaiting_approval -> routed with the event `approved` or `rejected`; the row or None."""
    return conn.execute(_APPROVED if approved else _REJECTED, {"rid": request_id, "detail": detail}).first()


def finish_by_person(
    conn: Connection, request_id: str, result: dict[str, Any], detail: dict[str, Any]
) -> Any:
    """needs_human -> succeeded with a person's reply as the result; the row or None."""
    row = conn.execute(_REPLIED, {"rid": request_id, "result": result, "detail": detail}).first()
    if row is not None and row.conversation_id:
        conversations.append_exchange(
            conn,
            row.tenant,
            row.conversation_id,
            request_id,
            row.text,
            result.get("reply", ""),
            row.specialist,
        )
    return row
