"""The shape of real traffic, measured from the record: what `capacity` and `cost --from-record` plan with.

A turn is one succeeded request; a conversation is the requests sharing a conversation id (a request
without one is a one-turn conversation). LLM time and tokens come from `llm_calls`, so they include
the router's calls and every step of the agent loop; cache hits count as turns but cost no provider
time, tokens or money.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import Select, and_, case, func, select

from app.errors import OpsError
from app.ops.numbers import Number
from app.state import session_scope
from app.state.models import LlmCall, Request, Status


class SampleScope(BaseModel):
    tenant: str | None = None
    since: datetime | None = None


class TrafficSample(BaseModel):
    scope: SampleScope
    turns: int
    conversations: int
    turns_per_conversation: float
    # Provider time per turn: the sum of its calls' latencies (LLM seconds the worker waits).
    llm_seconds_per_turn: float
    provider_calls_per_turn: float
    prompt_tokens_per_turn: float
    completion_tokens_per_turn: float
    tokens_per_turn: float
    # Share of all tokens that were completions, and share that went to the cheap tier.
    output_share: float
    cheap_tier_share: float
    # What the record actually paid per million tokens (None when nothing was priced).
    usd_per_mtok: Number | None


class EmptySample(OpsError, LookupError):
    """The record holds no succeeded request in scope: nothing to measure."""


def _scoped_requests(scope: SampleScope) -> Select[str, str, str | None]:
    conditions = [Request.status == Status.SUCCEEDED]
    if scope.tenant is not None:
        conditions.append(Request.tenant == scope.tenant)
    if scope.since is not None:
        conditions.append(Request.accepted_at >= scope.since)
    return select(Request.id, Request.tenant, Request.conversation_id).where(and_(*conditions))


def measure(scope: SampleScope | None = None) -> TrafficSample:
    scope = scope or SampleScope()
    scoped = _scoped_requests(scope).subquery()
    provider_call = LlmCall.cache_hit.is_(False)
    with session_scope() as session:
        # A conversation id names a conversation within its tenant ("/" is in no tenant name).
        conversation = scoped.c.tenant + "/" + func.coalesce(scoped.c.conversation_id, scoped.c.id)
        turns, conversations = session.execute(
            select(func.count(), func.count(func.distinct(conversation)))
        ).one()
        if not turns:
            where = (
                " and ".join(f"{k}={v}" for k, v in scope.model_dump(exclude_none=True).items())
                or "the whole record"
            )
            raise EmptySample(
                f"no succeeded request to measure in {where}: run some traffic first, "
                "or plan with flags instead of --from-record"
            )
        calls = session.execute(
            select(
                func.coalesce(func.sum(case((provider_call, LlmCall.latency_ms), else_=0.0)), 0.0),
                func.count().filter(provider_call),
                func.coalesce(func.sum(LlmCall.prompt_tokens), 0),
                func.coalesce(func.sum(LlmCall.completion_tokens), 0),
                func.coalesce(
                    func.sum(
                        case(
                            (LlmCall.tier == "cheap", LlmCall.prompt_tokens + LlmCall.completion_tokens),
                            else_=0,
                        )
                    ),
                    0,
                ),
                func.coalesce(func.sum(LlmCall.cost_usd), 0),
            ).join(scoped, scoped.c.id == LlmCall.request_id)
        ).one()
    latency_ms, provider_calls, prompt, completion, cheap_tokens, cost = calls
    tokens = int(prompt) + int(completion)
    return TrafficSample(
        scope=scope,
        turns=turns,
        conversations=conversations,
        turns_per_conversation=turns / conversations,
        llm_seconds_per_turn=float(latency_ms) / 1000 / turns,
        provider_calls_per_turn=provider_calls / turns,
        prompt_tokens_per_turn=int(prompt) / turns,
        completion_tokens_per_turn=int(completion) / turns,
        tokens_per_turn=tokens / turns,
        output_share=int(completion) / tokens if tokens else 0.0,
        cheap_tier_share=int(cheap_tokens) / tokens if tokens else 0.0,
        usd_per_mtok=(Decimal(cost) * 1_000_000 / tokens).quantize(Decimal("0.0001"))
        if tokens and cost
        else None,
    )
