"""LLM spend per tenant and UTC day (the budgets' own rows) and what is in doubt (from llm_calls).

`tenant_spend` keeps each day's completed spend (summed over the day's shards). What unfinished
calls hold comes from their intent rows, for every tenant alike (a tenant without a daily budget
reserves nothing on its day): calls still in flight, and calls in doubt (their process died before
completing them), each counted at its estimated cost, as the budgets count them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.config import get_settings
from app.state import LlmCall, Request, Tenant, TenantSpend

# app.inference.call_log.UNFINISHED (not imported: app.inference imports the metrics, which import this).
UNFINISHED = ("in_flight", "in_doubt")


class DaySpend(BaseModel):
    tenant: str
    day: date
    spent_usd: float
    in_flight_usd: float  # reserved by calls still being made
    in_doubt_usd: float  # estimated cost of calls whose process died before completing them
    in_doubt_calls: int
    daily_budget_usd: float | None  # None: no daily budget


class InDoubt(BaseModel):
    calls: int
    usd: float


def _utc_day(column: InstrumentedAttribute[datetime]) -> ColumnElement[date]:
    return cast(func.timezone("UTC", column), Date)


def in_doubt(session: Session, since: datetime | None = None) -> InDoubt:
    """Calls in doubt (created since `since`, if given), and their estimated cost."""
    query = select(func.count(), func.coalesce(func.sum(LlmCall.estimated_cost_usd), 0)).where(
        LlmCall.outcome == "in_doubt"
    )
    if since is not None:
        query = query.where(LlmCall.created_at >= since)
    calls, usd = session.execute(query).one()
    return InDoubt(calls=calls, usd=round(float(usd), 6))


def by_tenant_day(session: Session, since: date, tenant: str | None = None) -> list[DaySpend]:
    """Each tenant's days from `since` on (UTC), oldest first."""
    default_daily = get_settings().tenant_daily_budget_usd
    call_day = _utc_day(LlmCall.created_at)
    unfinished: dict[tuple[str, date], dict[str, tuple[int, Decimal]]] = {}
    for t, d, outcome, n, usd in session.execute(
        select(Request.tenant, call_day, LlmCall.outcome, func.count(), func.sum(LlmCall.estimated_cost_usd))
        .join(Request, Request.id == LlmCall.request_id)
        .where(
            LlmCall.outcome.in_(UNFINISHED),
            # The partial index on unfinished calls is by created_at: a day starts no later.
            LlmCall.created_at >= datetime.combine(since, time(), UTC),
            *([Request.tenant == tenant] if tenant else []),
        )
        .group_by(Request.tenant, call_day, LlmCall.outcome)
    ):
        unfinished.setdefault((t, d), {})[outcome] = (n, usd)
    spent = {
        (row.tenant, row.day): row
        for row in session.execute(
            select(TenantSpend.tenant, TenantSpend.day, func.sum(TenantSpend.spent_usd).label("spent_usd"))
            .where(TenantSpend.day >= since, *([TenantSpend.tenant == tenant] if tenant else []))
            .group_by(TenantSpend.tenant, TenantSpend.day)
        )
    }
    keys = sorted(spent.keys() | unfinished.keys(), key=lambda k: (k[1], k[0]))
    budgets = {
        name: daily
        for name, daily in session.execute(
            select(Tenant.name, Tenant.daily_budget_usd).where(Tenant.name.in_({t for t, _ in keys}))
        )
    }
    days = []
    for key in keys:
        calls = unfinished.get(key, {})
        flight_usd = calls.get("in_flight", (0, Decimal(0)))[1]
        n, doubt_usd = calls.get("in_doubt", (0, Decimal(0)))
        daily = budgets.get(key[0])
        daily = daily if daily is not None else default_daily
        days.append(
            DaySpend(
                tenant=key[0],
                day=key[1],
                spent_usd=round(float(spent[key].spent_usd if key in spent else 0), 6),
                in_flight_usd=round(float(flight_usd), 6),
                in_doubt_usd=round(float(doubt_usd), 6),
                in_doubt_calls=n,
                daily_budget_usd=float(daily) if daily else None,
            )
        )
    return days
