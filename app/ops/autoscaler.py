"""`switchboard autoscale`: each queue's concurrency follows its depth, within its policy and never
past what the provider's rate limit can feed.

Per queue and tick: pending = ready + unacked messages (the management API; with only a passive
declare, ready + tasks in flight), as KEDA's RabbitMQ scaler counts them. The policy wants
ceil(pending / target pending per unit of concurrency), between its min and max. The rate-limit cap
is the concurrency at which this queue alone would use up what the limiter leaves it (the
provider's RPM/TPM less the headroom, for each key across models and for each model group with
limits of its own, less what other queues used in the last minute), from the LLM calls and tokens its requests made and how long they ran, both measured in
the record (Little's law: concurrency = feedable requests/s x seconds per request, limiter waits
excluded). Above the cap more threads would only wait on the limiter, so the autoscaler holds there
and says so. A queue whose last change is younger than its cooldown holds. Every decision is logged
and written to `scaling_decisions`; changes go through `switchboard scale`'s code.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import case, func, insert, select
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.inference.limits import model_group
from app.inference.targets import providers
from app.observability.depth import depths
from app.ops.queue_status import worker_views
from app.ops.scale import ScaleError, scale
from app.orchestration.topology import ROUTER_QUEUE, work_queue_names
from app.state import LlmCall, Request, ScalingDecision, Status, session_scope

log = logging.getLogger(__name__)

# The profile of a queue's requests: its most recent finished requests, at most this old.
PROFILE_REQUESTS = 200
PROFILE_WINDOW = timedelta(minutes=30)


@dataclass(frozen=True)
class Policy:
    min: int
    max: int
    target_pending: float
    cooldown_s: float


def policy_for(queue: str, settings: Settings | None = None) -> Policy:
    s = settings or get_settings()
    if queue in s.autoscale_policies:
        return Policy(*s.autoscale_policies[queue])
    return Policy(s.autoscale_min, s.autoscale_max, s.autoscale_target_pending, s.autoscale_cooldown_s)


@dataclass(frozen=True)
class Cap:
    concurrency: int
    feedable_rps: float
    seconds_per_request: float
    calls_per_request: dict[str, float]
    tokens_per_request: dict[str, float]
    binding: str  # which limit: "<model> rpm" or "<model> tpm"


class Decision(BaseModel):
    queue: str
    action: Literal["up", "down", "hold"]
    pending: int
    current: int
    desired: int
    applied: int
    limit_cap: int | None
    reason: str
    detail: dict[str, Any] = {}


def decide(
    queue: str, pending: int, current: int, policy: Policy, cap: Cap | None, since_change_s: float | None
) -> Decision:
    """The policy's answer for one queue; pure, so it is tested without services."""
    wanted = math.ceil(pending / policy.target_pending)
    desired = min(policy.max, max(policy.min, wanted))
    reasons = [
        f"{pending} pending at {policy.target_pending:g} per unit wants {wanted}"
        + (f", policy range {policy.min}-{policy.max}" if desired != wanted else "")
    ]
    limited = cap is not None and desired > cap.concurrency
    if cap is not None and limited:
        desired = max(policy.min, cap.concurrency)
        reasons.append(
            f"held at {desired}: the provider's rate limit ({cap.binding}) feeds about {cap.feedable_rps:.2f} "
            f"requests/s here at {sum(cap.calls_per_request.values()):.1f} LLM calls per request, which "
            f"{cap.concurrency} concurrent requests of {cap.seconds_per_request:.1f}s already use up; more "
            "workers would only wait on the limiter"
        )
    detail: dict[str, Any] = {"policy": policy.__dict__, "wanted": wanted}
    action: Literal["up", "down", "hold"]
    if cap is not None:
        detail["cap"] = {**cap.__dict__}
    if desired == current:
        action, applied = "hold", current
        reasons.append(f"already at {current}")
    elif since_change_s is not None and since_change_s < policy.cooldown_s:
        action, applied = "hold", current
        reasons.append(
            f"cooldown: last change {since_change_s:.0f}s ago, policy waits {policy.cooldown_s:g}s"
        )
    else:
        action, applied = ("up" if desired > current else "down"), desired
    return Decision(
        queue=queue,
        action=action,
        pending=pending,
        current=current,
        desired=desired,
        applied=applied,
        limit_cap=cap.concurrency if cap else None,
        reason="; ".join(reasons),
        detail=detail,
    )


def _queue_of_call() -> Any:
    return case((LlmCall.purpose == "route", ROUTER_QUEUE), else_=Request.specialist)


def rate_cap(session: Session, queue: str, settings: Settings | None = None) -> Cap | None:
    """The concurrency the rate limit can feed for `queue`; None when the provider has no limit or
    the record has no finished request of this queue to measure yet."""
    s = settings or get_settings()
    keys = max(1, len(s.provider_api_keys))
    usable = (1 - s.provider_headroom) * keys
    # The key's limits hold for all models together; a model group's for its models.
    rpm = s.provider_rpm * usable
    tpm = s.provider_tpm * usable
    if rpm <= 0 and tpm <= 0 and not any(r or t for r, t in s.model_limits.values()):
        return None
    now = session.scalar(select(func.now()))
    assert now is not None
    # The queue's recent finished requests, and what each made of LLM calls and time.
    recent = (
        select(Request.id, Request.started_at, Request.finished_at)
        .where(
            Request.specialist == queue,
            Request.status == Status.SUCCEEDED,
            Request.finished_at > now - PROFILE_WINDOW,
        )
        .order_by(Request.finished_at.desc())
        .limit(PROFILE_REQUESTS)
        .subquery()
    )
    n, run_s = session.execute(
        select(func.count(), func.avg(func.extract("epoch", recent.c.finished_at - recent.c.started_at)))
    ).one()
    if not n or run_s is None:
        return None
    calls = session.execute(
        select(
            LlmCall.model,
            func.count(),
            func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens),
            func.sum(LlmCall.limiter_wait_ms),
        )
        .where(
            LlmCall.request_id.in_(select(recent.c.id)),
            LlmCall.cache_hit.is_(False),
            LlmCall.purpose != "route",
        )
        .group_by(LlmCall.model)
    ).all()
    if not calls:
        return None
    calls_per = {model: c / n for model, c, _, _ in calls}
    tokens_per = {model: float(t or 0) / n for model, _, t, _ in calls}
    waited_s = sum(float(w or 0) for *_, w in calls) / 1000 / n
    # What other queues drew from each model's budget over the last minute.
    others = dict(
        session.execute(
            select(LlmCall.model, func.count())
            .select_from(LlmCall)
            .outerjoin(Request, Request.id == LlmCall.request_id)
            .where(
                LlmCall.created_at > now - timedelta(seconds=60),
                LlmCall.cache_hit.is_(False),
                _queue_of_call() != queue,
            )
            .group_by(LlmCall.model)
        ).all()
    )
    feedable: list[tuple[float, str]] = []
    all_calls, all_tokens = sum(calls_per.values()), sum(tokens_per.values())
    if rpm > 0 and all_calls > 0:
        feedable.append((max(0.0, rpm - sum(others.values())) / 60 / all_calls, "key rpm"))
    if tpm > 0 and all_tokens > 0:
        feedable.append((tpm / 60 / all_tokens, "key tpm"))
    primary = providers()["primary"]
    groups: dict[str, list[float]] = {}  # group -> [calls, tokens, others' calls]
    limited: dict[str, tuple[int, int]] = {}
    for model, per in calls_per.items():
        group, limited[group] = model_group(primary, model)
        totals = groups.setdefault(group, [0.0, 0.0, 0.0])
        totals[0] += per
        totals[1] += tokens_per[model]
        totals[2] += others.get(model, 0)
    for group, (group_calls, group_tokens, drawn) in groups.items():
        group_rpm, group_tpm = (limit * usable for limit in limited[group])
        if group_rpm > 0 and group_calls > 0:
            feedable.append((max(0.0, group_rpm - drawn) / 60 / group_calls, f"{group} rpm"))
        if group_tpm > 0 and group_tokens > 0:
            feedable.append((group_tpm / 60 / group_tokens, f"{group} tpm"))
    if not feedable:
        return None
    rps, binding = min(feedable)
    service_s = max(0.05, float(run_s) - waited_s)
    return Cap(
        concurrency=max(1, math.ceil(rps * service_s)),
        feedable_rps=round(rps, 3),
        seconds_per_request=round(service_s, 2),
        calls_per_request={m: round(v, 2) for m, v in calls_per.items()},
        tokens_per_request={m: round(v, 1) for m, v in tokens_per.items()},
        binding=binding,
    )


def _last_change(session: Session, queue: str) -> datetime | None:
    return session.scalar(
        select(func.max(ScalingDecision.at)).where(
            ScalingDecision.queue == queue, ScalingDecision.action != "hold"
        )
    )


def run_once(queues: list[str] | None = None, *, apply: bool = True) -> list[Decision]:
    names = queues or work_queue_names()
    unknown = [q for q in names if q not in work_queue_names()]
    if unknown:
        raise ScaleError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(work_queue_names())}")
    depth = depths(names)
    workers = worker_views()
    decisions = []
    for queue in names:
        d = depth.queues.get(queue)
        serving = workers.get(queue, [])
        current = sum(w.concurrency or 0 for w in serving)
        if d is None:
            pending = 0
        elif d.unacked is not None:
            pending = d.ready + d.unacked
        else:
            pending = d.ready + sum(w.active for w in serving)
        with session_scope() as session:
            cap = rate_cap(session, queue) if queue != ROUTER_QUEUE else None
            last = _last_change(session, queue)
            now = session.scalar(select(func.now()))
        since = (now - last).total_seconds() if last and now else None
        decision = decide(queue, pending, current, policy_for(queue), cap, since)
        decision.detail["depth_source"] = depth.source
        if not serving:
            decision = decision.model_copy(
                update={
                    "action": "hold",
                    "applied": current,
                    "reason": decision.reason + "; no worker consumes it",
                }
            )
        elif apply and decision.action != "hold":
            try:
                report = scale(queue, decision.applied, set_by="autoscale")
                decision.applied = report.after
            except ScaleError as exc:
                decision = decision.model_copy(
                    update={
                        "action": "hold",
                        "applied": current,
                        "reason": f"{decision.reason}; scaling failed: {exc}",
                    }
                )
        _record(decision)
        log.info(
            "autoscale %s: %s %d -> %d (%s)",
            queue,
            decision.action,
            decision.current,
            decision.applied,
            decision.reason,
        )
        decisions.append(decision)
    return decisions


def _record(decision: Decision) -> None:
    with session_scope() as session:
        session.execute(insert(ScalingDecision).values(**decision.model_dump(mode="json")))


def run(queues: list[str] | None = None, interval_s: float | None = None, report: Any = None) -> None:
    """Decide every `interval_s` until interrupted; `report(decision)` sees each decision."""
    interval = interval_s if interval_s is not None else get_settings().autoscale_interval_s
    while True:
        started = time.monotonic()
        try:
            for decision in run_once(queues):
                if report:
                    report(decision)
        except ScaleError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broker or database blip: decide again next tick
            log.warning("autoscale tick failed: %s", exc)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
