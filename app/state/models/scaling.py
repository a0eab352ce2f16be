"""Scaling state: each queue's pool target and the autoscaler's decisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


class PoolTarget(Base):
    """The concurrency an operator (`switchboard scale`) or the autoscaler set for a queue, and
    the local supervisor that applies it by starting, stopping and resizing worker processes."""

    __tablename__ = "pool_targets"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    concurrency: Mapped[int] = mapped_column(Integer)
    processes: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    # "host:pid" of the `switchboard workers up` that runs this queue's pool, and its last heartbeat.
    supervisor: Mapped[str | None] = mapped_column(String(200))
    supervisor_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ScalingDecision(Base):
    """One autoscaler decision per queue and tick: what it saw, what the policy wanted, what it set."""

    __tablename__ = "scaling_decisions"
    __table_args__ = (
        CheckConstraint("action IN ('up','down','hold')", name="ck_scaling_decisions_action"),
        Index("ix_scaling_decisions_queue_at", "queue", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    queue: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(8))
    pending: Mapped[int] = mapped_column(Integer)
    current: Mapped[int] = mapped_column(Integer)
    desired: Mapped[int] = mapped_column(Integer)
    applied: Mapped[int] = mapped_column(Integer)
    # Most concurrency the provider's rate limit can feed for this queue; None when unlimited.
    limit_cap: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
