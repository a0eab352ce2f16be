"""The technical specialist's tables: the knowledge base and the status page.

Its own metadata, not the engine's: these tables come from specialists/technical/migrations
(version table alembic_version_technical), applied only where technical is enabled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Computed, DateTime, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class TechnicalBase(DeclarativeBase):
    pass


class KbArticle(TechnicalBase):
    __tablename__ = "kb_articles"
    __table_args__ = (Index("ix_kb_articles_search", "search", postgresql_using="gin"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    search: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english', title || ' ' || body)", persisted=True),
    )


class ServiceStatus(TechnicalBase):
    __tablename__ = "service_status"

    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
