"""`switchboard limits`: every rate-limit bucket of the fleet, its limits and how full it is.

For each bucket: the configured limit (as the last reservation was configured), the one the
provider reported (learned), the limit in force (the lower) and its rate after headroom, what the
record shows was used at that level in the last 60 s, and when the next request may start. Then the
latest limit events (learned limits changing).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select, text

from app.config import get_settings
from app.inference import limits, targets
from app.inference.limiter import Demand, earliest
from app.state import LimitEvent, LlmCall, RateBucket, session_scope


class BucketView(BaseModel):
    bucket: str
    level: str  # key, model or provider
    provider: str
    key_id: str | None
    group: str | None
    kind: str  # rpm or tpm
    configured: float | None
    learned: float | None
    learned_at: datetime | None
    limit: float | None  # in force: the lower of configured and learned
    effective_per_minute: float | None  # the limit in force less headroom
    used_last_60s: int  # requests (rpm) or tokens (tpm) the record shows at this level
    next_free_in_s: float  # until a request may start in this bucket (0: now)


class LimitEventView(BaseModel):
    at: datetime
    bucket: str
    previous_limit: float | None
    learned_limit: float
    configured_limit: float | None
    source: str


class LimitsView(BaseModel):
    headroom: float
    buckets: list[BucketView]
    events: list[LimitEventView]


def _group_of(host: str, model: str) -> str:
    provider = next((p for p in targets.providers().values() if p.host == host), None)
    return limits.model_group(provider, model)[0] if provider else model


def build(recent_events: int = 20) -> LimitsView:
    headroom = get_settings().provider_headroom
    with session_scope() as session:
        now = float(session.scalar(text("SELECT extract(epoch FROM clock_timestamp())")))
        rows = session.execute(select(RateBucket).order_by(RateBucket.bucket)).scalars().all()
        usage = session.execute(
            select(
                LlmCall.provider,
                LlmCall.key_id,
                LlmCall.model,
                func.count(),
                func.coalesce(func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens), 0),
            )
            .where(
                LlmCall.cache_hit.is_(False), LlmCall.created_at > func.now() - text("interval '60 seconds'")
            )
            .group_by(LlmCall.provider, LlmCall.key_id, LlmCall.model)
        ).all()
        latest = select(LimitEvent).order_by(LimitEvent.id.desc()).limit(recent_events)
        event_views = [
            LimitEventView.model_validate(e, from_attributes=True) for e in session.execute(latest).scalars()
        ]
    views = []
    for row in rows:
        parts = limits.parse_bucket(row.bucket)
        if parts is None:
            continue  # another user of the table (tenants at the door)
        used = [
            (n, t)
            for host, kid, model, n, t in usage
            if host == parts["host"]
            and (parts["level"] == "provider" or kid == parts["key_id"])
            and (parts["level"] != "model" or _group_of(host, model) == parts["group"])
        ]
        requests, tokens = sum(n for n, _ in used), sum(int(t) for _, t in used)
        limit, rate = Demand.of(row.bucket, 1, row.configured_limit, headroom).effective(row.learned_limit)
        next_free = max(row.paused_until, earliest(row.tat, now, rate, 1)) - now
        views.append(
            BucketView(
                bucket=row.bucket,
                level=parts["level"],
                provider=parts["host"],
                key_id=parts.get("key_id"),
                group=parts.get("group"),
                kind=parts["kind"],
                configured=row.configured_limit,
                learned=row.learned_limit,
                learned_at=row.learned_at,
                limit=limit,
                effective_per_minute=round(rate.per_minute, 3) if rate else None,
                used_last_60s=requests if parts["kind"] == "rpm" else tokens,
                next_free_in_s=round(max(0.0, next_free), 3),
            )
        )
    return LimitsView(headroom=headroom, buckets=views, events=event_views)


def render_text(view: LimitsView) -> str:
    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    lines = [
        (
            f"{'bucket':<64}{'configured':>11}{'learned':>9}{'in force':>10}{'per min':>10}"
            f"{'used 60s':>10}{'next s':>8}"
        )
    ]
    for b in view.buckets:
        lines.append(
            f"{b.bucket:<64}{show(b.configured):>11}{show(b.learned):>9}{show(b.limit):>10}"
            f"{show(b.effective_per_minute):>10}{b.used_last_60s:>10}{b.next_free_in_s:>8g}"
        )
    if not view.buckets:
        lines.append("(no rate-limit buckets yet: no limited call has been made)")
    lines.append(f"headroom {view.headroom:g}; the limit in force is the lower of configured and learned")
    for e in view.events:
        lines.append(
            f"{e.at:%Y-%m-%d %H:%M:%S} {e.bucket}: {show(e.previous_limit)} -> {e.learned_limit:g} "
            f"({e.source})"
        )
    return "\n".join(lines)
