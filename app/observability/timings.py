"""Where a request's time went, stage by stage, derived from what the record already keeps.

Every timestamp is the database's clock (now() in the statement that moved the request), so stages
measured in different processes and on different machines line up. Steps come from `step_runs`,
LLM and limiter time from `llm_calls`, database time from `requests.db_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select

from app.state import LlmCall, Request, StepRun

# The parts end-to-end time splits into; shares of these name the bottleneck.
PARTS = ("queued_for_router", "queued_for_specialist", "llm", "limiter_wait", "database", "other_work")
KIND_OF_PART = {
    "queued_for_router": "queue",
    "queued_for_specialist": "queue",
    "llm": "llm",
    "limiter_wait": "rate_limit",
    "database": "database",
    "other_work": "compute",
}


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    # Clamped: a stage cannot take negative time, whatever the rounding of two timestamps.
    return None if start is None or end is None else round(max(0.0, (end - start).total_seconds()), 4)


@dataclass
class RequestTimings:
    """One request's stages in seconds (None: the request has not reached that stage)."""

    queued_for_router: float | None
    routing: float | None
    queued_for_specialist: float | None
    running: float | None
    end_to_end: float | None
    llm: float
    limiter_wait: float
    database: float
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def parts(self) -> dict[str, float]:
        """End-to-end time split into disjoint parts (finished requests only); `other_work` is
        what the router and specialist did besides waiting on the LLM, the limiter and the database
        (tools, CPU, retry backoff)."""
        busy = (self.routing or 0.0) + (self.running or 0.0)
        return {
            "queued_for_router": self.queued_for_router or 0.0,
            "queued_for_specialist": self.queued_for_specialist or 0.0,
            "llm": self.llm,
            "limiter_wait": self.limiter_wait,
            "database": self.database,
            "other_work": max(0.0, busy - self.llm - self.limiter_wait - self.database),
        }

    def as_dict(self) -> dict[str, float | None]:
        flat: dict[str, float | None] = {
            "queued_for_router": self.queued_for_router,
            "routing": self.routing,
            "queued_for_specialist": self.queued_for_specialist,
            "running": self.running,
            "end_to_end": self.end_to_end,
            "llm": self.llm,
            "limiter_wait": self.limiter_wait,
            "database": self.database,
        }
        flat.update({f"step.{name}": seconds for name, seconds in self.steps.items()})
        return flat


def request_timings(row: Any, steps: dict[str, float], llm_s: float, limiter_s: float) -> RequestTimings:
    """`row` carries the request's timestamps and db_ms (a Request or a row of `request_rows`)."""
    return RequestTimings(
        queued_for_router=seconds_between(row.accepted_at, row.route_started_at),
        routing=seconds_between(row.route_started_at, row.routed_at),
        queued_for_specialist=seconds_between(row.routed_at, row.started_at),
        running=seconds_between(row.started_at, row.finished_at),
        end_to_end=seconds_between(row.accepted_at, row.finished_at),
        llm=round(llm_s, 4),
        limiter_wait=round(limiter_s, 4),
        database=round((row.db_ms or 0.0) / 1000, 4),
        steps=steps,
    )


def request_rows(where: Any) -> Select[*tuple[Any, ...]]:
    """Requests matching `where` with everything their timings and the report need."""
    return select(
        Request.id,
        Request.tenant,
        Request.status,
        Request.specialist,
        Request.route_method,
        Request.prompt_tokens,
        Request.completion_tokens,
        Request.cost_usd,
        Request.accepted_at,
        Request.route_started_at,
        Request.routed_at,
        Request.started_at,
        Request.finished_at,
        Request.db_ms,
    ).where(where)


def step_rows(where: Any) -> Select[*tuple[Any, ...]]:
    """Succeeded steps of the requests matching `where`: (request_id, step, duration_ms)."""
    return (
        select(StepRun.request_id, StepRun.step, StepRun.duration_ms)
        .join(Request, Request.id == StepRun.request_id)
        .where(where, StepRun.status == "succeeded", StepRun.duration_ms.is_not(None))
        .order_by(StepRun.id)
    )


def call_rows(where: Any) -> Select[*tuple[Any, ...]]:
    """Per request matching `where`: LLM seconds (provider calls, not cache hits), limiter seconds,
    calls answered by the provider, calls answered from the cache, and calls of unpriced models."""
    return (
        select(
            LlmCall.request_id,
            func.coalesce(
                func.sum(case((LlmCall.cache_hit.is_(False), LlmCall.latency_ms), else_=0.0)), 0.0
            ).label("llm_ms"),
            func.coalesce(func.sum(LlmCall.limiter_wait_ms), 0.0).label("limiter_ms"),
            func.count().filter(LlmCall.outcome == "ok", LlmCall.cache_hit.is_(False)).label("provider_ok"),
            func.count().filter(LlmCall.outcome == "ok", LlmCall.cache_hit.is_(True)).label("cache_hits"),
            func.count().filter(LlmCall.cost_usd.is_(None)).label("unpriced"),
        )
        .join(Request, Request.id == LlmCall.request_id)
        .where(where)
        .group_by(LlmCall.request_id)
    )
