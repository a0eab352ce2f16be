"""Budgets: a request's cost ceiling and its tenant's daily budget, reserved before every call.

Budgets count like the limiter's tokens. Before a provider call, its estimated maximum cost (the
prompt estimate and max tokens at the model's price) is reserved against the request's ceiling and
the tenant's UTC day, in the same statement that writes the call's intent row (`in_flight`): one
round trip. The request's is a conditional update of its row; the real cost replaces the
reservation when the call completes (app/inference/call_log.py). A refused reservation makes no
call: `BudgetExhausted`, which ends the request (never retried). Past `budget_cheap_share` of a
ceiling, a request's remaining calls go to the cheap tier, and a capable call the budget refuses
is tried once on it.

A tenant's day is split over `DAY_SHARDS` rows of `tenant_spend`, a request's calls going to the
one its id hashes to, so concurrent requests of one tenant do not queue on one row lock. Without a
daily budget (0) the reservation does not touch the day at all: there is nothing to check, and the
call's cost is added to its shard when it completes. With one, the reservation is added to its
shard and the day's sum over all shards, read after that shard is locked, must stay within the
budget. That sum misses only reservations being made on the other shards at that same moment, so
concurrent calls of a tenant can overshoot its daily budget by at most one call's estimated cost
per other shard (`DAY_SHARDS - 1` calls), and only when they reach the budget together. One shard
would be exact, and every call of the tenant would queue on its lock again.

A model missing from the price table is counted at the table's highest input and output prices, so
an unpriced call can never slip under a budget at $0 (the record's own `cost_usd` for it is the
provider layer's business).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.errors import InferenceError
from app.inference.call_log import shard_of
from app.observability import metrics
from app.state import autocommit_scope

log = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
CENT_FRACTION = Decimal("0.000001")
# How long an intent write waits for the database (a restart) before the step fails instead: the
# call is not made until its row exists, so waiting costs nothing twice.
PATIENCE_S = 30.0


class BudgetExhausted(InferenceError):
    """The call was not made: its reservation does not fit the request's ceiling or the tenant's
    day. Not retryable; the request ends with this as its error."""

    def __init__(
        self, scope: str, limit: Decimal, used: Decimal, needed: Decimal, tenant: str | None
    ) -> None:
        what = "the request's budget" if scope == "request" else f"tenant {tenant}'s daily budget"
        when = "" if scope == "request" else " today"
        super().__init__(
            f"budget_exhausted: {what} of ${limit:.4f} is spent (${used:.4f} spent or reserved{when}; "
            f"the next call needs up to ${needed:.4f})"
        )
        self.scope, self.limit, self.used, self.needed = scope, limit, used, needed


def price(model: str) -> tuple[Decimal, Decimal]:
    """USD per million input and output tokens; an unpriced model gets the table's highest of each."""
    prices = get_settings().prices
    if model in prices:
        return prices[model]
    if not prices:
        return Decimal(0), Decimal(0)
    return max(p[0] for p in prices.values()), max(p[1] for p in prices.values())


def charge(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """What a call counts against the budgets."""
    per_input, per_output = price(model)
    return ((per_input * prompt_tokens + per_output * completion_tokens) / MILLION).quantize(CENT_FRACTION)


def estimate(model: str, prompt_tokens: int, max_tokens: int) -> Decimal:
    """A call's maximum cost: the prompt estimate read in, max_tokens written (rounded up)."""
    per_input, per_output = price(model)
    exact = (per_input * prompt_tokens + per_output * max_tokens) / MILLION
    return exact.quantize(CENT_FRACTION, rounding="ROUND_CEILING")


# The request's limits, its reservation within its ceiling, the tenant's within its day, and the
# intent row only if both held. Written as SQL: it is one statement of four parts, read together.
# A ceiling or budget of 0 is none. `held` succeeds before `day` is tried, so a refused day leaves
# the request's reservation to give back (`_GIVE_BACK`): that happens once, when the request ends.
# Only a daily budget needs the tenant's day at reservation: without one there is nothing to
# check, and the call's cost reaches the day when it completes (app/inference/call_log.py). With
# one, the reservation goes to the request's shard of the day and is checked against the sum of
# all shards (`switchboard_reserve_day`, migrations/versions/0014_spend_shards.py).
_OPEN = text(f"""
WITH limits AS (
    SELECT r.id, r.tenant,
           coalesce(t.request_budget_usd, :request_default) AS ceiling,
           coalesce(t.daily_budget_usd, :daily_default) AS daily
    FROM requests r LEFT JOIN tenants t ON t.name = r.tenant
    WHERE r.id = :request_id
), held AS (
    UPDATE requests r SET reserved_usd = r.reserved_usd + :amount
    FROM limits
    WHERE r.id = limits.id AND (limits.ceiling = 0 OR r.cost_usd + r.reserved_usd + :amount <= limits.ceiling)
    RETURNING r.id, r.tenant, limits.daily, r.cost_usd + r.reserved_usd AS used
), day AS MATERIALIZED (
    SELECT s.shard, x.held, x.used
    FROM (SELECT * FROM held WHERE daily > 0) h,
         LATERAL (SELECT {shard_of("h.id")} AS shard) s,
         LATERAL switchboard_reserve_day(h.tenant, (now() AT TIME ZONE 'UTC')::date, s.shard, :amount, h.daily) x
), intent AS (
    INSERT INTO llm_calls (request_id, step, purpose, provider, model, tier, key_id, outcome,
                           estimated_tokens, estimated_cost_usd, limiter_wait_ms, retries, cache_hit, latency_ms,
                           spend_shard)
    SELECT :request_id, :step, :purpose, :provider, :model, :tier, :key_id, 'in_flight',
           :estimated_tokens, :amount, :limiter_wait_ms, :retries, false, 0, day.shard
    FROM held LEFT JOIN day ON true
    WHERE held.daily = 0 OR day.held
    RETURNING id
)
SELECT (SELECT id FROM intent) AS call_id,
       (SELECT count(*) FROM limits) AS found,
       (SELECT tenant FROM limits) AS tenant,
       (SELECT ceiling FROM limits) AS ceiling,
       (SELECT daily FROM limits) AS daily,
       (SELECT used FROM held) AS request_used,
       (SELECT used FROM day) AS day_used,
       (SELECT cost_usd + reserved_usd FROM requests WHERE id = :request_id) AS request_before
""")

# A call for no request (nothing to budget): only its intent row.
_OPEN_UNBUDGETED = text("""
INSERT INTO llm_calls (request_id, step, purpose, provider, model, tier, key_id, outcome,
                       estimated_tokens, estimated_cost_usd, limiter_wait_ms, retries, cache_hit, latency_ms)
VALUES (NULL, :step, :purpose, :provider, :model, :tier, :key_id, 'in_flight',
        :estimated_tokens, :amount, :limiter_wait_ms, :retries, false, 0)
RETURNING id
""")

_GIVE_BACK = text("UPDATE requests SET reserved_usd = reserved_usd - :amount WHERE id = :request_id")


@dataclass(frozen=True)
class Intent:
    """What the gateway knows about a call before making it."""

    request_id: str | None
    step: str | None
    purpose: str
    provider: str
    model: str
    tier: str
    key_id: str | None
    estimated_tokens: int
    amount: Decimal
    limiter_wait_ms: float
    retries: int


def open_call(intent: Intent) -> int:
    """Reserve the call's estimated cost and write its intent row; the row's id. Raises
    BudgetExhausted (nothing reserved, no row) when a ceiling refuses it."""
    s = get_settings()
    params: dict[str, Any] = {
        **intent.__dict__,
        "request_default": s.request_budget_usd,
        "daily_default": s.tenant_daily_budget_usd,
    }
    if intent.request_id is None:
        return int(_patiently(_OPEN_UNBUDGETED, params).scalar_one())
    row = _patiently(_OPEN, params).one()
    if row.call_id is not None:
        _note_share(
            intent.request_id,
            s.budget_cheap_share,
            ((row.request_used, row.ceiling), (row.day_used, row.daily)),
        )
        return int(row.call_id)
    if not row.found:
        raise ValueError(f"no request {intent.request_id!r} in the record to charge the call to")
    if row.request_used is not None:  # the request's reservation held, the tenant's day refused it
        _patiently(_GIVE_BACK, params)
        metrics.BUDGET_REFUSALS.labels("tenant_day").inc()
        # `day_used` counts this call as if it were taken.
        raise BudgetExhausted(
            "tenant_day", row.daily, row.day_used - intent.amount, intent.amount, row.tenant
        )
    metrics.BUDGET_REFUSALS.labels("request").inc()
    raise BudgetExhausted("request", row.ceiling, row.request_before or Decimal(0), intent.amount, row.tenant)


def _patiently(statement: Any, params: dict[str, Any]) -> Any:
    """Execute one self-committing statement, waiting out a database restart. An outcome lost with
    the connection may leave a second intent row: it ends `in_doubt`, counted, never missing."""
    waited, pause = 0.0, 0.5
    while True:
        try:
            with autocommit_scope() as conn:
                return conn.execute(statement, params)
        except OperationalError as exc:
            if waited >= PATIENCE_S:
                raise
            log.warning("intent write failed (%s); trying again in %.1fs", type(exc).__name__, pause)
            time.sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 5.0)


# Requests past the cheap share of a ceiling, as this process last saw them (bounded: a request
# forgotten here only learns it again at its next reservation).
_near: OrderedDict[str, None] = OrderedDict()
_near_lock = threading.Lock()
_NEAR_MAX = 10_000


def _note_share(
    request_id: str, share: float, usage: tuple[tuple[Decimal | None, Decimal | None], ...]
) -> None:
    """Remember the request if any (used, limit) pair is past `share` of its limit."""
    past = any(used is not None and limit and used >= limit * Decimal(str(share)) for used, limit in usage)
    if past:
        with _near_lock:
            _near[request_id] = None
            _near.move_to_end(request_id)
            while len(_near) > _NEAR_MAX:
                _near.popitem(last=False)


def tier_for(request_id: str | None, tier: str) -> str:
    """The tier a call of this request uses: the cheap one once it is near a ceiling."""
    if request_id is not None and tier != "cheap":
        with _near_lock:
            if request_id in _near:
                return "cheap"
    return tier
