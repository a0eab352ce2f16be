"""Provider limits shared by every process: GCRA buckets per level, learned-limit changes, and keys out of rotation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


class RateBucket(Base):
    """One GCRA bucket (requests or tokens per minute) at one level: an API key (all its models), a
    model group on a key, or a whole provider (app/inference/limits.py names them).

    `tat` is the theoretical arrival time in epoch seconds: the moment the bucket is empty again if
    nothing more is admitted. Every process reserves its slot in all of a call's buckets by moving
    them forward in one statement, so the whole fleet shares one budget at every level.
    """

    __tablename__ = "rate_buckets"

    bucket: Mapped[str] = mapped_column(String(300), primary_key=True)
    tat: Mapped[float] = mapped_column(default=0.0)
    # A 429 pauses the key and model for everyone until then (epoch seconds).
    paused_until: Mapped[float] = mapped_column(default=0.0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    # The limit (per minute, before headroom) the last reservation was configured with; None: none.
    configured_limit: Mapped[float | None]
    # The limit the provider reported in its headers; reservations adopt the lower of the two.
    learned_limit: Mapped[float | None]
    learned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LimitEvent(Base):
    """A learned limit changed: the provider reported a limit other than the one in force."""

    __tablename__ = "limit_events"
    __table_args__ = (Index("ix_limit_events_bucket_at", "bucket", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    bucket: Mapped[str] = mapped_column(String(300))
    previous_limit: Mapped[float | None]
    learned_limit: Mapped[float]
    configured_limit: Mapped[float | None]
    source: Mapped[str] = mapped_column(Text)


class ProviderKey(Base):
    """A provider API key known by its id; a key answered 401 is taken out of rotation here."""

    __tablename__ = "provider_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider: Mapped[str] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
