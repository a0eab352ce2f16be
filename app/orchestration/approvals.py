"""Approvals: tool calls a person must allow first, who decided, and the deadline past which they escalate.

A tool declares which calls need one (`Tool.approval`, app/orchestration/specialist.py). The workflow step then
parks (workflows/engine.py): its state, the pending call and the request's move to
`awaiting_approval` commit together, and the task ends, holding no worker slot. `decide` records
the decision and sends the request back to its specialist's queue, where the step resumes from
its state: approved, the call runs (once: side-effecting tools are idempotent by request and step);
rejected, the tool's answer to the model is that a person declined it, and the model tells the
customer so. Either way no finished LLM call is paid again. An approval still pending past its
deadline is escalated by the reconciler's sweep: the request moves to the human queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert

from app.config import get_settings
from app.observability import metrics
from app.orchestration.fairness import dispatch
from app.orchestration.handoffs import queue_for_person
from app.orchestration.registry import get_specialist
from app.state import Approval, Request, Status, autocommit_scope, session_scope
from app.state import transitions as record
from app.state.transitions import RequestNotFound

log = logging.getLogger(__name__)

# Longest string value of a call's arguments kept in the record (a summary for the approver).
_ARGUMENT_CHARS = 500


@dataclass(frozen=True)
class Decision:
    approved: bool
    by: str
    reason: str | None


class ApprovalView(BaseModel):
    id: int
    request_id: str
    tenant: str
    specialist: str | None
    step: str
    tool: str
    arguments: dict[str, Any]
    why: str
    requested_at: datetime
    deadline: datetime
    decision: Literal["approved", "rejected", "escalated"] | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


def _summary(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:_ARGUMENT_CHARS] if isinstance(v, str) else v) for k, v in arguments.items()}


def _deadline() -> Any:
    return func.now() + text("make_interval(secs => :approval_deadline)").bindparams(
        approval_deadline=get_settings().approval_deadline_s
    )


def _deadline_ago() -> Any:
    return func.now() - text("make_interval(secs => :approval_deadline)").bindparams(
        approval_deadline=get_settings().approval_deadline_s
    )


def park(
    conn: Connection, request_id: str, step: str, *, key: str, tool: str, arguments: dict[str, Any], why: str
) -> None:
    """Inside the parking step's checkpoint: the request waits for a person, and the call is
    recorded as pending. Nothing if another attempt owns the request now."""
    moved = record.park(conn, request_id, {"step": step, "tool": tool, "call": key, "why": why})
    if moved is None:
        return
    conn.execute(
        insert(Approval)
        .values(
            request_id=request_id,
            step=step,
            call_key=key,
            tool=tool,
            arguments=_summary(arguments),
            why=why,
            deadline=_deadline(),
        )
        .on_conflict_do_nothing(constraint="uq_approvals_request_step_call")
    )
    metrics.APPROVALS.labels(tool, "requested").inc()


def decision(request_id: str, step: str, key: str) -> Decision | None:
    """A person's decision on one call, if made (an escalated call has none: a person replies instead)."""
    with autocommit_scope() as conn:
        row = conn.execute(
            select(Approval.decision, Approval.decided_by, Approval.reason).where(
                Approval.request_id == request_id,
                Approval.step == step,
                Approval.call_key == key,
                Approval.decision.in_(("approved", "rejected")),
            )
        ).first()
    return None if row is None else Decision(row.decision == "approved", row.decided_by or "", row.reason)


def _view(approval: Approval, request: Any) -> ApprovalView:
    return ApprovalView(
        id=approval.id,
        request_id=approval.request_id,
        tenant=request.tenant,
        specialist=request.specialist,
        step=approval.step,
        tool=approval.tool,
        arguments=approval.arguments,
        why=approval.why,
        requested_at=approval.requested_at,
        deadline=approval.deadline,
        decision=approval.decision,  # type: ignore[arg-type]
        decided_by=approval.decided_by,
        decided_at=approval.decided_at,
        reason=approval.reason,
    )


def pending(tenant: str | None = None) -> list[ApprovalView]:
    """Calls waiting for a decision, oldest first."""
    with session_scope() as session:
        query = (
            select(Approval, Request.tenant, Request.specialist)
            .join(Request, Request.id == Approval.request_id)
            .where(Approval.decision.is_(None), Request.status == Status.AWAITING_APPROVAL)
            .order_by(Approval.requested_at, Approval.id)
        )
        if tenant is not None:
            query = query.where(Request.tenant == tenant)
        return [_view(row.Approval, row) for row in session.execute(query)]


def decide(
    request_id: str, *, approve: bool, by: str, reason: str | None = None, tenant: str | None = None
) -> ApprovalView:
    """Approve or reject the request's pending call and send it back to its specialist, whose
    step resumes with the decision. With `tenant`, another tenant's request is not found. Raises
    NotWaiting when the request is not awaiting approval (decided already, escalated, finished)."""
    if not approve and not (reason or "").strip():
        raise ValueError("a rejection needs a reason (it is recorded and told to the model)")
    verdict = "approved" if approve else "rejected"
    with session_scope() as session:
        query = select(Request).where(Request.id == request_id)
        if tenant is not None:
            query = query.where(Request.tenant == tenant)
        request = session.scalar(query.with_for_update())
        if request is None:
            raise RequestNotFound(f"no request {request_id!r}")
        approval = session.scalar(
            select(Approval)
            .where(Approval.request_id == request_id, Approval.decision.is_(None))
            .order_by(Approval.id.desc())
            .limit(1)
            .with_for_update()
        )
        if request.status != Status.AWAITING_APPROVAL or approval is None:
            raise record.NotWaiting(request_id, request.status, Status.AWAITING_APPROVAL)
        moved = record.resume_decided(
            session.connection(),
            request_id,
            approved=approve,
            detail={
                "approval": approval.id,
                "tool": approval.tool,
                "step": approval.step,
                "by": by,
                "reason": reason,
            },
        )
        assert moved is not None  # the row is locked and was awaiting approval
        approval.decision, approval.decided_by, approval.reason = verdict, by, reason
        approval.decided_at = func.now()
        session.flush()
        session.refresh(approval)
        view = _view(approval, request)
        specialist, priority, owner = request.specialist, request.priority, request.tenant
    metrics.APPROVALS.labels(view.tool, verdict).inc()
    log.info("request %s: %s %s by %s", request_id, view.tool, verdict, by)
    try:
        dispatch(request_id, get_specialist(specialist or ""), priority, owner)
    except Exception as exc:  # noqa: BLE001 - recorded as routed: the reconciler re-dispatches it after the lease
        log.warning(
            "request %s %s but not dispatched (%s); the reconciler will send it",
            request_id,
            verdict,
            type(exc).__name__,
        )
    return view


def escalate_overdue(batch: int = 500) -> int:
    """Move requests whose approval waited past its deadline to the human queue; returns how many.
    Rows are claimed with SKIP LOCKED, so sweeps on several machines do not collide."""
    escalated = 0
    with session_scope() as session:
        overdue = session.scalars(
            select(Approval)
            .join(Request, Request.id == Approval.request_id)
            .where(
                Approval.decision.is_(None),
                Request.status == Status.AWAITING_APPROVAL,
                # The deadline set when it parked, or the setting in force now if that is shorter:
                # lowering SWITCHBOARD_APPROVAL_DEADLINE_S applies to approvals already waiting.
                or_(Approval.deadline < func.now(), Approval.requested_at < _deadline_ago()),
            )
            .order_by(Approval.deadline)
            .limit(batch)
            .with_for_update(of=Approval, skip_locked=True)
        ).all()
        conn = session.connection()
        for approval in overdue:
            why = f"approval of {approval.tool} waited past its deadline ({approval.why})"
            if (
                record.escalate(
                    conn,
                    approval.request_id,
                    {
                        "approval": approval.id,
                        "tool": approval.tool,
                        "deadline": approval.deadline.isoformat(),
                    },
                )
                is None
            ):
                continue
            approval.decision, approval.decided_by, approval.decided_at = (
                "escalated",
                "reconciler",
                func.now(),
            )
            approval.reason = "waited past its deadline (SWITCHBOARD_APPROVAL_DEADLINE_S)"
            queue_for_person(conn, approval.request_id, "approval_deadline", why)
            metrics.APPROVAL_ESCALATIONS.labels(approval.tool).inc()
            escalated += 1
    if escalated:
        log.warning("escalated %d approval(s) past their deadline to the human queue", escalated)
    return escalated
