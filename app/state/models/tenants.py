"""Tenants of the HTTP ingress: the tenant, its API keys, its daily spend and its per-tenant settings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    # USD; NULL takes the setting (SWITCHBOARD_TENANT_DAILY_BUDGET_USD, SWITCHBOARD_REQUEST_BUDGET_USD),
    # 0 means no limit.
    daily_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    request_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TenantSpend(Base):
    """One shard of a tenant's LLM spend on one UTC day: completed calls, and what unfinished calls
    with a daily budget to check reserve. The day is the sum of its shards; a request's calls go to
    the shard its id hashes to, so concurrent requests of one tenant do not queue on one row
    (app/inference/budget.py)."""

    __tablename__ = "tenant_spend"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0, server_default="0")
    spent_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0), server_default="0")
    reserved_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0), server_default="0")


class TenantSetting(Base):
    """A per-tenant value any specialist may define (e.g. billing's refund approval limit).

    Keyed by tenant name, not a foreign key to `tenants`: requests submitted through the Python
    client or Celery name tenants that the HTTP API's table need not hold."""

    __tablename__ = "tenant_settings"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
