"""The engine's durable record: every request, every stage, every LLM call, and shared engine state.

The schema changes only through Alembic revisions in migrations/; these classes describe it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


class Status(enum.StrEnum):
    ACCEPTED = "accepted"
    ROUTED = "routed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # An attempt failed and a retry is scheduled; the request is not finished.
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    # A tool call needs a person's approval: parked at its step, holding no worker slot.
    AWAITING_APPROVAL = "awaiting_approval"
    # Handed to the human queue; a person's reply finishes it.
    NEEDS_HUMAN = "needs_human"


TERMINAL = frozenset({Status.SUCCEEDED, Status.DEAD_LETTERED})
# Not finished, but waiting on a person rather than on a worker.
WAITING_ON_PERSON = frozenset({Status.AWAITING_APPROVAL, Status.NEEDS_HUMAN})
STATUS_CHECK = (
    "status IN ('accepted','routed','running','succeeded','failed','dead_lettered',"
    "'awaiting_approval','needs_human')"
)


def new_id() -> str:
    return str(uuid.uuid4())


def _now() -> Any:
    return func.now()


class Conversation(Base):
    """Conversation ids are the calling app's, so each tenant has its own: (tenant, id)."""

    __tablename__ = "conversations"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The customer of its first request; a request of another customer cannot continue it.
    customer: Mapped[str | None] = mapped_column(String(200))
    specialist: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


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
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
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
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


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
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class Turn(Base):
    """A conversation's history, in PostgreSQL so any worker can take any turn."""

    __tablename__ = "turns"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "conversation_id"],
            ["conversations.tenant", "conversations.id"],
            name="fk_turns_conversation",
        ),
        Index("ix_turns_conversation", "tenant", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class Delivery(Base):
    """The reply handed back for a request; one per request, so a redelivered task cannot send twice."""

    __tablename__ = "deliveries"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), default="record")
    body: Mapped[str] = mapped_column(Text)
    delivered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


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
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
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
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    replied_by: Mapped[str | None] = mapped_column(String(200))
    replied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TenantSetting(Base):
    """A per-tenant value any specialist may define (e.g. billing's refund approval limit).

    Keyed by tenant name, not a foreign key to `tenants`: requests submitted through the Python
    client or Celery name tenants that the HTTP API's table need not hold."""

    __tablename__ = "tenant_settings"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


# --- Inference layer state shared by every process ---------------------------------------------


class RateBucket(Base):
    """One GCRA bucket (requests or tokens per minute) at one level: an API key (all its models), a
    model group on a key, or a whole provider (app/inference/limits.py names them).

    `tat` is the theoretical arrival time in epoch seconds: the moment the bucket is empty again if
    nothing more is admitted. Every process reserves its slot in all of a call's buckets by moving
    them forward in one statement, so the whole fleet shares one budget at every level.
    """

    __tablename__ = "rate_buckets"

    bucket: Mapped[str] = mapped_column(String(300), primary_key=True)
    tat: Mapped[float] = mapped_column(default=0.0)
    # A 429 pauses the key and model for everyone until then (epoch seconds).
    paused_until: Mapped[float] = mapped_column(default=0.0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    # The limit (per minute, before headroom) the last reservation was configured with; None: none.
    configured_limit: Mapped[float | None]
    # The limit the provider reported in its headers; reservations adopt the lower of the two.
    learned_limit: Mapped[float | None]
    learned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LimitEvent(Base):
    """A learned limit changed: the provider reported a limit other than the one in force."""

    __tablename__ = "limit_events"
    __table_args__ = (Index("ix_limit_events_bucket_at", "bucket", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    bucket: Mapped[str] = mapped_column(String(300))
    previous_limit: Mapped[float | None]
    learned_limit: Mapped[float]
    configured_limit: Mapped[float | None]
    source: Mapped[str] = mapped_column(Text)


class ProviderKey(Base):
    """A provider API key known by its id; a key answered 401 is taken out of rotation here."""

    __tablename__ = "provider_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider: Mapped[str] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)


class CircuitBreaker(Base):
    __tablename__ = "circuit_breakers"
    __table_args__ = (
        CheckConstraint("state IN ('closed','open','half_open')", name="ck_circuit_breakers_state"),
    )

    target: Mapped[str] = mapped_column(String(300), primary_key=True)  # provider/model
    state: Mapped[str] = mapped_column(String(16), default="closed", server_default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    window_started: Mapped[float] = mapped_column(default=0.0, server_default="0")
    window_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    window_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    opened_at: Mapped[float] = mapped_column(default=0.0, server_default="0")
    probe_started: Mapped[float] = mapped_column(default=0.0, server_default="0")


class BreakerEvent(Base):
    __tablename__ = "breaker_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(300))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class CachedResponse(Base):
    """Exact response cache for single-shot calls, keyed by model + normalized messages + tools."""

    __tablename__ = "llm_cache"
    __table_args__ = (Index("ix_llm_cache_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# --- Tenants of the HTTP ingress ----------------------------------------------------------------


class Tenant(Base):
    """Who owns requests. `requests.tenant` names one; limits apply to all its keys together."""

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint(
            "coalesce(daily_budget_usd, 0) >= 0 AND coalesce(request_budget_usd, 0) >= 0",
            name="ck_tenants_budgets",
        ),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    rpm_limit: Mapped[int] = mapped_column(Integer)
    max_concurrent: Mapped[int] = mapped_column(Integer)
    # The callback signing secret is derived from SWITCHBOARD_SIGNING_KEY and this salt, so the
    # record never holds a usable secret; a new salt rotates it.
    signing_salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    # USD; NULL takes the setting (SWITCHBOARD_TENANT_DAILY_BUDGET_USD, SWITCHBOARD_REQUEST_BUDGET_USD),
    # 0 means no limit.
    daily_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    request_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))


class TenantSpend(Base):
    """A tenant's LLM spend on one UTC day: completed calls, and what unfinished calls reserve.
    Every reservation of the tenant is a conditional update of this row (app/inference/budget.py)."""

    __tablename__ = "tenant_spend"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    spent_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0), server_default="0")
    reserved_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0), server_default="0")


class ApiKey(Base):
    """An API key, known by its id (safe to log); only the SHA-256 of the token is kept."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('submit','read')", name="ck_api_keys_scope"),
        Index("ix_api_keys_tenant", "tenant"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"))
    token_sha256: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(8), default="submit", server_default="submit")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Callback(Base):
    """Where a request's result is POSTed once it succeeds; written with the request."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint("status IN ('pending','sending','delivered','failed')", name="ck_callbacks_status"),
    )

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackAttempt(Base):
    """One POST of a callback: its answer or its error."""

    __tablename__ = "callback_attempts"
    __table_args__ = (Index("ix_callback_attempts_request", "request_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("callbacks.request_id"))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


# --- Scaling ---------------------------------------------------------------------------------------


class PoolTarget(Base):
    """The concurrency an operator (`switchboard scale`) or the autoscaler set for a queue, and
    the local supervisor that applies it by starting, stopping and resizing worker processes."""

    __tablename__ = "pool_targets"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    concurrency: Mapped[int] = mapped_column(Integer)
    processes: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
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
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
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
