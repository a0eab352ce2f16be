"""A request and its append-only event log: the record's spine; every other table points at a request."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now
from app.state.models.status import STATUS_CHECK, Status


def new_id() -> str:
    return str(uuid.uuid4())


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_requests_tenant_idempotency_key"),
        ForeignKeyConstraint(
            ["tenant", "conversation_id"],
            ["conversations.tenant", "conversations.id"],
            name="fk_requests_conversation",
        ),
        CheckConstraint(STATUS_CHECK, name="ck_requests_status"),
        CheckConstraint("priority IN ('high','normal','low')", name="ck_requests_priority"),
        Index("ix_requests_status_accepted_at", "status", "accepted_at"),
        Index("ix_requests_conversation", "conversation_id"),
        Index("ix_requests_unpublished", "accepted_at", postgresql_where=text("published_at IS NULL")),
        # Per-tenant in-flight counts: the ingress concurrency cap and the router's fair share.
        Index("ix_requests_tenant_status", "tenant", "status"),
        # Drain rates per queue (app/orchestration/admission/backlog.py) count recent completions and routings.
        Index("ix_requests_finished_at", "finished_at"),
        Index("ix_requests_routed_at", "routed_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(64))
    # The calling app's id of the end user it authenticated; tools act for this customer only. Like
    # the tenant, a trigger refuses any change after insert.
    customer: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict, server_default="{}")
    priority: Mapped[str] = mapped_column(String(8), default="normal", server_default="normal")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default=Status.ACCEPTED, server_default="accepted")
    specialist: Mapped[str | None] = mapped_column(String(64))
    route_confidence: Mapped[float | None]
    route_method: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0), server_default="0")
    # What the request's unfinished (in flight or in doubt) LLM calls hold against its ceiling.
    reserved_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0), server_default="0")
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The W3C traceparent of the span that accepted it: re-publishes and replays continue its trace.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    # When a router worker took the request off its queue (the database's clock, like the others).
    route_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    routed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_lettered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Time spent in database statements by the router and specialist tasks for this request.
    db_ms: Mapped[float] = mapped_column(default=0.0, server_default="0")


class RequestEvent(Base):
    """Append-only: a database trigger refuses UPDATE and DELETE."""

    __tablename__ = "request_events"
    __table_args__ = (Index("ix_request_events_request", "request_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
