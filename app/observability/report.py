"""`switchboard report`: where the time and the money went, from the record alone.

Per stage and specialist p50/p95/p99, throughput, tokens and cost per specialist and tenant, cache
hit rate, the share routed without an LLM, what waited in the queues over time, LLM spend per
tenant and UTC day with what is in doubt, and the bottleneck: the part of end-to-end time (queue
waits, LLM, rate-limit waits, database, other work) that is the largest share of all finished
requests' time. A queue wait is only the symptom when the pool's workers spend most of their
running time waiting on the rate limiter: then the provider's limit binds, and the verdict says
so, as the autoscaler does when it holds a pool at its rate-limit cap (more workers would only
wait on the limiter too).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, select

from app.observability.spend import DaySpend, InDoubt, by_tenant_day, in_doubt
from app.observability.timings import (
    KIND_OF_PART,
    PARTS,
    RequestTimings,
    call_rows,
    request_rows,
    request_timings,
    step_rows,
)
from app.state import LlmCall, Request, session_scope
from app.state.models import TERMINAL

VERDICT = {
    "queue": "queue-bound",
    "llm": "LLM-bound",
    "rate_limit": "rate-limit-bound",
    "database": "database-bound",
    "compute": "compute-bound",
}
ADVICE = {
    "queue": "requests wait for a free worker: add workers or concurrency to that pool",
    "llm": "requests wait on the provider: a faster or cheaper tier, caching, fewer calls per request",
    "rate_limit": "the provider's rate limit binds: calls wait for rate-limit slots; raise the provider "
    "limits, add API keys or cut tokens per request",
    "database": "statements take the time: look at pg_stat_statements and the connection pool",
    "compute": "the workers' own work takes the time: tools, CPU, retry backoff",
}


def percentile(values: list[float], q: float, digits: int = 4) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], digits)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], digits)


class StageStats(BaseModel):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    total_s: float


def stage_stats(values: list[float]) -> StageStats:
    return StageStats(
        count=len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        mean=round(statistics.fmean(values), 4) if values else None,
        total_s=round(sum(values), 4),
    )


class Bottleneck(BaseModel):
    stage: str  # one of timings.PARTS
    kind: str  # queue, llm, rate_limit, database, compute
    verdict: str  # e.g. "LLM-bound"
    share: float  # of all finished requests' end-to-end time
    where: str | None  # the queue(s) for a queue-bound run
    shares: dict[str, float]
    advice: str
    # How the running time (after the queues) split into llm, limiter_wait, database and
    # other_work: for a queue wait, the waiting pool's, which decides whether the pool or the
    # provider's limit is what binds.
    running_shares: dict[str, float] | None = None
    because: str | None = None


class Usage(BaseModel):
    requests: int
    tokens: int
    cost_usd: float


class SpecialistReport(Usage):
    succeeded: int
    dead_lettered: int
    stages: dict[str, StageStats]
    bottleneck: Bottleneck | None


class Point(BaseModel):
    at: datetime
    finished_per_s: float
    waiting_for_router: int
    waiting_for_specialist: dict[str, int]


class Report(BaseModel):
    since: datetime
    until: datetime
    requests: int
    finished: int
    succeeded: int
    dead_lettered: int
    window_s: float
    throughput_per_s: float
    stages: dict[str, StageStats]
    by_specialist: dict[str, SpecialistReport]
    by_tenant: dict[str, Usage]
    tokens: int
    # Of the priced calls only: calls of models with no price in SWITCHBOARD_PRICES are counted
    # in unpriced_calls (their cost is unknown, not $0).
    cost_usd: float
    # LLM calls of the window whose process died before completing them, at their estimated cost
    # (not in cost_usd), and each tenant's spend per UTC day since the window's first day.
    in_doubt: InDoubt
    spend_by_tenant_day: list[DaySpend]
    unpriced_calls: int
    unpriced_models: list[str]
    llm_calls: int
    cache_hits: int
    cache_hit_rate: float | None
    routing_methods: dict[str, int]
    routed_without_llm: float | None
    bottleneck: Bottleneck | None
    timeline: list[Point]


_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`15m`, `2h`, `1d`, `90s`, or an ISO timestamp (UTC unless it names its zone)."""
    now = now or datetime.now(UTC)
    match = _SINCE.match(value.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"--since {value!r}: give a duration like 15m, 2h, 1d or an ISO timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bottleneck(items: list[tuple[Any, RequestTimings]]) -> Bottleneck | None:
    finished = [(row, t) for row, t in items if t.end_to_end is not None]
    if not finished:
        return None
    totals = dict.fromkeys(PARTS, 0.0)
    for _, timing in finished:
        for part, seconds in timing.parts.items():
            totals[part] += seconds
    whole = sum(totals.values()) or 1.0
    stage = max(PARTS, key=lambda p: totals[p])
    kind = KIND_OF_PART[stage]
    where = None
    if stage == "queued_for_router":
        where = "router"
    elif stage == "queued_for_specialist":
        waited: dict[str, float] = defaultdict(float)
        for row, timing in finished:
            waited[row.specialist or "unrouted"] += timing.queued_for_specialist or 0.0
        where = max(waited, key=lambda k: waited[k])
    because = None
    pool = [t for row, t in finished if where in (None, "router") or (row.specialist or "unrouted") == where]
    running_shares = _running_shares(pool)
    if (
        kind == "queue"
        and running_shares
        and max(running_shares, key=lambda p: running_shares[p]) == "limiter_wait"
    ):
        kind = "rate_limit"
        because = (
            f"requests queue for {where}, whose workers spend {running_shares['limiter_wait']:.0%} "
            "of their running time waiting on the rate limiter: more workers would only add "
            "contention"
        )
    return Bottleneck(
        stage=stage,
        kind=kind,
        verdict=VERDICT[kind],
        share=round(totals[stage] / whole, 4),
        where=where,
        shares={p: round(totals[p] / whole, 4) for p in PARTS},
        advice=ADVICE[kind],
        running_shares=running_shares,
        because=because,
    )


RUNNING_PARTS = ("llm", "limiter_wait", "database", "other_work")


def _running_shares(timings: list[RequestTimings]) -> dict[str, float] | None:
    """How these requests' running time (after they left the queues) split."""
    totals = {p: sum(t.parts[p] for t in timings) for p in RUNNING_PARTS}
    whole = sum(totals.values())
    return {p: round(v / whole, 4) for p, v in totals.items()} if whole > 0 else None


def _stages(timings: list[RequestTimings]) -> dict[str, StageStats]:
    values: dict[str, list[float]] = defaultdict(list)
    for timing in timings:
        for name, seconds in timing.as_dict().items():
            if seconds is not None:
                values[name].append(seconds)
    return {name: stage_stats(v) for name, v in values.items()}


def _timeline(rows: list[Any], start: datetime, end: datetime, buckets: int = 40) -> list[Point]:
    """What waited in the queues at each moment and how fast requests finished, rebuilt from the
    record's timestamps (no sampling needed, so it covers runs nobody watched)."""
    span = (end - start).total_seconds()
    if span <= 0:
        return []
    step = span / buckets
    never = datetime.max.replace(tzinfo=UTC)
    points = []
    for i in range(1, buckets + 1):
        at = start + timedelta(seconds=step * i)
        lower = at - timedelta(seconds=step)
        finished = sum(1 for r in rows if r.finished_at is not None and lower < r.finished_at <= at)
        waiting: dict[str, int] = defaultdict(int)
        for r in rows:
            if r.routed_at is not None and r.routed_at <= at < (r.started_at or never):
                waiting[r.specialist or "unrouted"] += 1
        points.append(
            Point(
                at=at,
                finished_per_s=round(finished / step, 3),
                waiting_for_router=sum(
                    1 for r in rows if r.accepted_at <= at < (r.route_started_at or never)
                ),
                waiting_for_specialist=dict(waiting),
            )
        )
    return points


def build(since: datetime, until: datetime | None = None) -> Report:
    until = until or datetime.now(UTC)
    window = and_(Request.accepted_at >= since, Request.accepted_at <= until)
    with session_scope() as session:
        rows = session.execute(request_rows(window)).all()
        steps: dict[str, dict[str, float]] = defaultdict(dict)
        for s in session.execute(step_rows(window)):
            steps[s.request_id][s.step] = round(s.duration_ms / 1000, 4)
        calls = {c.request_id: c for c in session.execute(call_rows(window))}
        doubt = in_doubt(session, since)
        spend = by_tenant_day(session, since.astimezone(UTC).date())
        unpriced_models = sorted(
            session.scalars(
                select(LlmCall.model)
                .distinct()
                .join(Request, Request.id == LlmCall.request_id)
                .where(window, LlmCall.cost_usd.is_(None))
            )
        )
    items = []
    for row in rows:
        c = calls.get(row.id)
        timing = request_timings(
            row, steps.get(row.id, {}), c.llm_ms / 1000 if c else 0.0, c.limiter_ms / 1000 if c else 0.0
        )
        items.append((row, timing))

    by_spec: dict[str, list[tuple[Any, RequestTimings]]] = defaultdict(list)
    tenants: dict[str, list[Any]] = defaultdict(list)
    methods: dict[str, int] = defaultdict(int)
    for row, timing in items:
        by_spec[row.specialist or "unrouted"].append((row, timing))
        tenants[row.tenant].append(row)
        if row.route_method:
            methods[row.route_method] += 1

    def usage(group: list[Any]) -> dict[str, Any]:
        return {
            "requests": len(group),
            "tokens": sum(r.prompt_tokens + r.completion_tokens for r in group),
            "cost_usd": round(float(sum(r.cost_usd for r in group)), 6),
        }

    finished_rows = [r for r, _ in items if r.status in TERMINAL and r.finished_at is not None]
    first = min((r.accepted_at for r, _ in items), default=since)
    last = max((r.finished_at for r in finished_rows), default=first)
    window_s = max(0.0, (last - first).total_seconds())
    provider_ok = sum(c.provider_ok for c in calls.values())
    hits = sum(c.cache_hits for c in calls.values())
    routed = sum(methods.values())
    return Report(
        since=since,
        until=until,
        requests=len(items),
        finished=len(finished_rows),
        succeeded=sum(1 for r, _ in items if r.status == "succeeded"),
        dead_lettered=sum(1 for r, _ in items if r.status == "dead_lettered"),
        window_s=round(window_s, 3),
        throughput_per_s=round(len(finished_rows) / window_s, 3) if window_s > 0 else 0.0,
        stages=_stages([t for _, t in items]),
        by_specialist={
            name: SpecialistReport(
                **usage([r for r, _ in group]),
                succeeded=sum(1 for r, _ in group if r.status == "succeeded"),
                dead_lettered=sum(1 for r, _ in group if r.status == "dead_lettered"),
                stages=_stages([t for _, t in group]),
                bottleneck=bottleneck(group),
            )
            for name, group in sorted(by_spec.items())
        },
        by_tenant={name: Usage(**usage(group)) for name, group in sorted(tenants.items())},
        tokens=sum(r.prompt_tokens + r.completion_tokens for r, _ in items),
        cost_usd=round(float(sum(r.cost_usd for r, _ in items)), 6),
        in_doubt=doubt,
        spend_by_tenant_day=spend,
        unpriced_calls=sum(c.unpriced for c in calls.values()),
        unpriced_models=unpriced_models,
        llm_calls=provider_ok,
        cache_hits=hits,
        cache_hit_rate=round(hits / (hits + provider_ok), 4) if hits + provider_ok else None,
        routing_methods=dict(sorted(methods.items())),
        routed_without_llm=round(1 - methods.get("llm", 0) / routed, 4) if routed else None,
        bottleneck=bottleneck(items),
        timeline=_timeline([r for r, _ in items], first, last) if items else [],
    )


def _fmt(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


MAIN_STAGES = (
    "queued_for_router",
    "routing",
    "queued_for_specialist",
    "running",
    "llm",
    "limiter_wait",
    "database",
    "end_to_end",
)


def render_text(report: Report) -> str:
    lines = [
        f"Switchboard report {report.since:%Y-%m-%d %H:%M:%S} .. {report.until:%H:%M:%S} UTC",
        (
            f"  requests {report.requests}, finished {report.finished} (succeeded {report.succeeded}, "
            f"dead-lettered {report.dead_lettered}), throughput {report.throughput_per_s}/s "
            f"over {report.window_s}s"
        ),
    ]
    b = report.bottleneck
    if b is not None:
        where = f" ({b.where})" if b.where else ""
        lines.append(
            f"  bottleneck: {b.verdict}: {b.stage}{where} is {b.share:.0%} of end-to-end time; {b.advice}"
        )
        if b.because:
            lines.append(f"    ({b.because})")
    lines.append(f"  {'stage':<24}{'p50':>9}{'p95':>9}{'p99':>9}")
    for name in [*MAIN_STAGES, *sorted(k for k in report.stages if k.startswith("step."))]:
        s = report.stages.get(name)
        if s is not None:
            lines.append(f"  {name:<24}{_fmt(s.p50):>9}{_fmt(s.p95):>9}{_fmt(s.p99):>9}")
    for name, spec in report.by_specialist.items():
        e2e = spec.stages.get("end_to_end")
        verdict = f", {spec.bottleneck.verdict} ({spec.bottleneck.stage})" if spec.bottleneck else ""
        lines.append(
            f"  {name:<12} {spec.requests} requests, p95 {_fmt(e2e.p95 if e2e else None)}, "
            f"tokens {spec.tokens:,}, cost ${spec.cost_usd:.4f}{verdict}"
        )
    rate = f"{report.cache_hit_rate:.1%}" if report.cache_hit_rate is not None else "-"
    without = f"{report.routed_without_llm:.1%}" if report.routed_without_llm is not None else "-"
    lines.append(f"  LLM calls {report.llm_calls:,}, cache hit rate {rate}, routed without an LLM {without}")
    if report.in_doubt.calls:
        lines.append(
            f"  in doubt: {report.in_doubt.calls} call(s), ~${report.in_doubt.usd:.4f} estimated "
            "(their process died before completing them; not in the cost above)"
        )
    for d in report.spend_by_tenant_day:
        budget = f" of ${d.daily_budget_usd:g}" if d.daily_budget_usd else ""
        lines.append(
            f"  spend {d.day} {d.tenant:<12} ${d.spent_usd:.4f}{budget}, "
            f"in flight ${d.in_flight_usd:.4f}, in doubt ${d.in_doubt_usd:.4f}"
        )
    if report.unpriced_calls:
        lines.append(
            f"  unpriced: {report.unpriced_calls:,} calls of {', '.join(report.unpriced_models)} have no "
            "price in SWITCHBOARD_PRICES; the costs above leave them out"
        )
    return "\n".join(lines)
