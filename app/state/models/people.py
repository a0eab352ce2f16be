"""Where a person is in the loop: tool calls waiting for approval and requests handed to the human queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


class Approval(Base):
    """A tool call that waits for a person's decision; one per (request, step, call)."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("request_id", "step", "call_key", name="uq_approvals_request_step_call"),
        CheckConstraint("decision IN ('approved','rejected','escalated')", name="ck_approvals_decision"),
        # The pending ones: the approvals list and the reconciler's deadline sweep.
        Index("ix_approvals_pending_deadline", "deadline", postgresql_where=text("decision IS NULL")),
        Index("ix_approvals_request", "request_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    step: Mapped[str] = mapped_column(String(64))
    # The model's tool-call id (or another key the step chose), so a resumed step finds its decision.
    call_key: Mapped[str] = mapped_column(String(200))
    tool: Mapped[str] = mapped_column(String(64))
    # The validated arguments, cut to a summary a person can read.
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # Why the tool said this call needs approval.
    why: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decision: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)


class Handoff(Base):
    """A request handed to the human queue, and the person's reply once given."""

    __tablename__ = "handoffs"
    __table_args__ = (
        CheckConstraint(
            "source IN ('workflow','tool','approval_deadline','failure')", name="ck_handoffs_source"
        ),
    )

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    # What handed it over: a workflow's rule, the model's tool call, an approval past its
    # deadline, or a failure retries cannot fix.
    source: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    replied_by: Mapped[str | None] = mapped_column(String(200))
    replied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
