"""LLM spend per tenant and UTC day (the budgets' own rows) and what is in doubt (from llm_calls).

`tenant_spend` keeps each day's completed spend and what unfinished calls reserve; a call in doubt
(its process died before completing it) keeps its reservation, so here the reserved dollars are
split into calls still in flight and calls in doubt, counted at their estimated cost.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.config import get_settings
from app.state import LlmCall, Request, Tenant, TenantSpend


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
    doubt_day = _utc_day(LlmCall.created_at)
    doubtful = {
        (t, d): (n, usd)
        for t, d, n, usd in session.execute(
            select(Request.tenant, doubt_day, func.count(), func.sum(LlmCall.estimated_cost_usd))
            .join(Request, Request.id == LlmCall.request_id)
            .where(
                LlmCall.outcome == "in_doubt",
                doubt_day >= since,
                *([Request.tenant == tenant] if tenant else []),
            )
            .group_by(Request.tenant, doubt_day)
        )
    }
    rows = session.execute(
        select(
            TenantSpend.tenant,
            TenantSpend.day,
            TenantSpend.spent_usd,
            TenantSpend.reserved_usd,
            Tenant.daily_budget_usd,
        )
        .outerjoin(Tenant, Tenant.name == TenantSpend.tenant)
        .where(TenantSpend.day >= since, *([TenantSpend.tenant == tenant] if tenant else []))
        .order_by(TenantSpend.day, TenantSpend.tenant)
    ).all()
    days = []
    for row in rows:
        n, doubt = doubtful.get((row.tenant, row.day), (0, Decimal(0)))
        daily = row.daily_budget_usd if row.daily_budget_usd is not None else default_daily
        days.append(
            DaySpend(
                tenant=row.tenant,
                day=row.day,
                spent_usd=round(float(row.spent_usd), 6),
                in_flight_usd=round(max(0.0, float(row.reserved_usd - (doubt or 0))), 6),
                in_doubt_usd=round(float(doubt or 0), 6),
                in_doubt_calls=n,
                daily_budget_usd=float(daily) if daily else None,
            )
        )
    return days
