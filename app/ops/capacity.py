"""Capacity planning: how many worker slots a daily audience needs, worked step by step.

The worked example it reproduces: 5,000 daily users at 3% peak concurrency are 150 conversations at
once; 6 turns of 3 s LLM time and 30 s think time make a 198 s (3.3 min) conversation of which 18 s
keep a worker busy; at 10 conversations per worker that is 15 workers, and 2-3x headroom makes it
30-45. A worker here is one execution slot (one thread of a pool's concurrency).

Arithmetic is in Decimal so that the example's figures come out exactly, not as 150.00000000000003.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from app.config import Settings
from app.ops.numbers import Number

SECONDS_PER_MINUTE = Decimal(60)


class CapacityInputs(BaseModel):
    dau: Number = Field(gt=0, description="daily active users")
    concurrency: Number = Field(gt=0, le=1, description="share of daily users active at the peak")
    turns: Number = Field(gt=0, description="turns per conversation")
    llm_seconds: Number = Field(ge=0, description="LLM seconds per turn (what keeps a worker busy)")
    think_seconds: Number = Field(ge=0, description="user think time between turns")
    per_worker: Number = Field(gt=0, description="conversations one worker slot carries")
    headroom_low: Number = Field(Decimal(2), ge=1)
    headroom_high: Number = Field(Decimal(3), ge=1)
    tokens_per_turn: Number | None = Field(None, ge=0)
    provider_calls_per_turn: Number = Field(Decimal(1), ge=0)
    source: Literal["flags", "record"] = "flags"

    @model_validator(mode="after")
    def _ordered(self) -> CapacityInputs:
        if self.headroom_high < self.headroom_low:
            raise ValueError("headroom: the high end must not be below the low end (e.g. 2-3)")
        if self.llm_seconds + self.think_seconds == 0:
            raise ValueError("llm_seconds and think_seconds cannot both be 0: a turn must take some time")
        return self


class Range(BaseModel):
    low: int
    high: int


class ProviderCheck(BaseModel):
    """Peak demand against the provider's limits (after Switchboard's headroom)."""

    requests_per_minute_limit: int | None
    tokens_per_minute_limit: int | None
    binds: bool
    # The most worker slots the limit can feed; more only wait on the limiter.
    workers_the_limit_feeds: int | None
    note: str


class CapacityPlan(BaseModel):
    inputs: CapacityInputs
    concurrent_users: float
    conversation_seconds: float
    conversation_minutes: float
    active_seconds: float
    active_share: float
    # How many conversations of this shape one worker could interleave at best.
    max_conversations_per_worker: int
    workers: int
    workers_with_headroom: Range
    pool_concurrency: int
    processes_with_headroom: Range
    peak_turns_per_minute: float
    peak_provider_requests_per_minute: float
    peak_tokens_per_minute: float | None
    provider: ProviderCheck
    warnings: list[str]


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _num(value: Decimal, places: int = 4) -> float:
    return float(round(value, places))


def _limit(value: int, headroom: float) -> int | None:
    return int(value * (1 - headroom)) if value > 0 else None


def _provider_check(workers: int, rpm: Decimal, tpm: Decimal | None, settings: Settings) -> ProviderCheck:
    rpm_limit = _limit(settings.provider_rpm, settings.provider_headroom)
    tpm_limit = _limit(settings.provider_tpm, settings.provider_headroom)
    # The share of the peak the provider can serve: the tighter of the two limits.
    shares = []
    if rpm_limit is not None and rpm > 0:
        shares.append(Decimal(rpm_limit) / rpm)
    if tpm_limit is not None and tpm:
        shares.append(Decimal(tpm_limit) / tpm)
    if not shares:
        note = (
            "no provider limit set (SWITCHBOARD_PROVIDER_RPM/_TPM): the plan assumes the provider "
            "serves the whole peak"
        )
        return ProviderCheck(
            requests_per_minute_limit=rpm_limit,
            tokens_per_minute_limit=tpm_limit,
            binds=False,
            workers_the_limit_feeds=None,
            note=note,
        )
    share = min(shares)
    fed = _floor(workers * share) if share < 1 else None
    if share < 1:
        note = (
            f"the provider limit binds: it serves {_num(share * 100, 1)}% of the peak, enough for "
            f"{fed} worker(s); more workers only wait on the limiter. Raise the limit or plan for "
            "a queue at the peak"
        )
    else:
        note = f"the provider limit holds the peak with {_num((share - 1) * 100, 1)}% to spare"
    return ProviderCheck(
        requests_per_minute_limit=rpm_limit,
        tokens_per_minute_limit=tpm_limit,
        binds=share < 1,
        workers_the_limit_feeds=fed,
        note=note,
    )


def plan(inputs: CapacityInputs, settings: Settings, pool_concurrency: int | None = None) -> CapacityPlan:
    concurrent = inputs.dau * inputs.concurrency
    conversation_s = inputs.turns * (inputs.llm_seconds + inputs.think_seconds)
    active_s = inputs.turns * inputs.llm_seconds
    max_per_worker = _floor(conversation_s / active_s) if active_s else 0
    workers = _ceil(concurrent / inputs.per_worker)
    low, high = _ceil(workers * inputs.headroom_low), _ceil(workers * inputs.headroom_high)
    threads = pool_concurrency or settings.specialist_concurrency
    turns_per_min = concurrent * inputs.turns / conversation_s * SECONDS_PER_MINUTE
    rpm = turns_per_min * inputs.provider_calls_per_turn
    tpm = turns_per_min * inputs.tokens_per_turn if inputs.tokens_per_turn is not None else None
    warnings = []
    if active_s and inputs.per_worker > max_per_worker:
        warnings.append(
            f"{inputs.per_worker} conversations per worker is more than fit: a worker busy "
            f"{_fmt(active_s)} s of every {_fmt(conversation_s)} s carries at most {max_per_worker}"
        )
    return CapacityPlan(
        inputs=inputs,
        concurrent_users=_num(concurrent),
        conversation_seconds=_num(conversation_s),
        conversation_minutes=_num(conversation_s / SECONDS_PER_MINUTE),
        active_seconds=_num(active_s),
        active_share=_num(active_s / conversation_s),
        max_conversations_per_worker=max_per_worker,
        workers=workers,
        workers_with_headroom=Range(low=low, high=high),
        pool_concurrency=threads,
        processes_with_headroom=Range(low=_ceil(Decimal(low) / threads), high=_ceil(Decimal(high) / threads)),
        peak_turns_per_minute=_num(turns_per_min, 2),
        peak_provider_requests_per_minute=_num(rpm, 2),
        peak_tokens_per_minute=_num(tpm, 0) if tpm is not None else None,
        provider=_provider_check(workers, rpm, tpm, settings),
        warnings=warnings,
    )


def _fmt(value: Decimal | float) -> str:
    return f"{Decimal(str(value)):,.2f}".rstrip("0").rstrip(".")


def _span(low: Decimal | int, high: Decimal | int) -> str:
    return _fmt(low) if low == high else f"{_fmt(low)}-{_fmt(high)}"


def explain(p: CapacityPlan) -> list[str]:
    """Each intermediate figure on its own line, as an operator would check it by hand."""
    i = p.inputs
    pct = _fmt(i.concurrency * 100)
    lines = [
        f"inputs from {i.source}",
        f"concurrent users:   {_fmt(i.dau)} DAU x {pct}% = {_fmt(p.concurrent_users)}",
        (
            f"conversation:       {_fmt(i.turns)} turns x ({_fmt(i.llm_seconds)} s LLM + {_fmt(i.think_seconds)} s think)"
            f" = {_fmt(p.conversation_seconds)} s ({_fmt(round(p.conversation_minutes, 1))} min)"
        ),
        (
            f"active per convo:   {_fmt(i.turns)} x {_fmt(i.llm_seconds)} s = {_fmt(p.active_seconds)} s"
            f" ({_fmt(round(p.active_share * 100, 1))}% of it)"
        ),
        (
            f"per worker:         {_fmt(i.per_worker)} conversations"
            f" (at most {p.max_conversations_per_worker} fit: {_fmt(p.conversation_seconds)} s / {_fmt(p.active_seconds)} s)"
        ),
        f"workers:            {_fmt(p.concurrent_users)} / {_fmt(i.per_worker)} = {p.workers}",
        (
            f"with headroom:      {_span(i.headroom_low, i.headroom_high)}x = "
            f"{_span(p.workers_with_headroom.low, p.workers_with_headroom.high)} workers"
        ),
        (
            f"pool processes:     at {p.pool_concurrency} threads each: "
            f"{_span(p.processes_with_headroom.low, p.processes_with_headroom.high)}"
        ),
        f"peak load:          {_fmt(p.peak_turns_per_minute)} turns/min, "
        f"{_fmt(p.peak_provider_requests_per_minute)} provider requests/min"
        + (f", {_fmt(p.peak_tokens_per_minute)} tokens/min" if p.peak_tokens_per_minute is not None else ""),
        f"provider:           {p.provider.note}",
    ]
    lines += [f"warning:            {w}" for w in p.warnings]
    return lines
