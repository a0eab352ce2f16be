"""What a request's work cost: workflow step checkpoints and every LLM call (or cache hit) made for it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


class StepRun(Base):
    """One workflow step's checkpoint: a redelivered task skips steps that already succeeded.
    A `parked` step's output is the state it resumes from (see workflows/engine.py)."""

    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("request_id", "step", name="uq_step_runs_request_step"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    step: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None]


class LlmCall(Base):
    """One provider call (or cache hit). Written before the provider is called (`in_flight`, with
    its estimates) and completed after; `in_doubt`: its process died in between (app/orchestration/reconciler.py)."""

    __tablename__ = "llm_calls"
    __table_args__ = (
        Index("ix_llm_calls_request", "request_id"),
        Index("ix_llm_calls_target_created", "provider", "model", "created_at"),
        Index(
            "ix_llm_calls_in_flight",
            "created_at",
            postgresql_where=text("outcome IN ('in_flight', 'in_doubt')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"))
    step: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    tier: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # NULL: a model with no price (unknown, not free); see app/inference/cost.py.
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6), default=Decimal(0), server_default="0")
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    outcome: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(200))
    limiter_wait_ms: Mapped[float] = mapped_column(default=0.0, server_default="0")
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_hit: Mapped[bool] = mapped_column(default=False, server_default="false")
    # Prompt estimate + max tokens, and their cost at the model's price (the fallback price for an
    # unpriced model): reserved against the budgets while the call is unfinished, and what a call
    # in doubt is counted at.
    estimated_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    estimated_cost_usd: Mapped[Decimal] = mapped_column(
        Numeric(14, 6), default=Decimal(0), server_default="0"
    )
    # The shard of its tenant's day (tenant_spend) that holds its reservation while it is
    # unfinished; NULL: none (no daily budget to check when it was reserved).
    spend_shard: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
