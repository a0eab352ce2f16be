"""The technical specialist's tables: the knowledge base and the status page.

Its own metadata, not the engine's: these tables come from specialists/technical/migrations
(version table alembic_version_technical), applied only where technical is enabled. Every row is
a tenant's, shared by its customers (`TenantOwned`): tools read them only through `in_tenant()`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Computed, DateTime, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.orchestration.specialist import TenantOwned


class TechnicalBase(DeclarativeBase):
    pass


class KbArticle(TenantOwned, TechnicalBase):
    __tablename__ = "kb_articles"
    __table_args__ = (
        Index("ix_kb_articles_search", "search", postgresql_using="gin"),
        UniqueConstraint("tenant", "slug", name="uq_kb_articles_tenant_slug"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english', title || ' ' || body)", persisted=True),
    )


class ServiceStatus(TenantOwned, TechnicalBase):
    __tablename__ = "service_status"

    # A tenant's own status page: its tenant is part of the key.
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
