"""Circuit breakers per provider/model, shared by every process, and their transitions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


class CircuitBreaker(Base):
    __tablename__ = "circuit_breakers"
    __table_args__ = (
        CheckConstraint("state IN ('closed','open','half_open')", name="ck_circuit_breakers_state"),
    )

    target: Mapped[str] = mapped_column(String(300), primary_key=True)  # provider/model
    state: Mapped[str] = mapped_column(String(16), default="closed", server_default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    window_started: Mapped[float] = mapped_column(default=0.0, server_default="0")
    window_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    window_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    opened_at: Mapped[float] = mapped_column(default=0.0, server_default="0")
    probe_started: Mapped[float] = mapped_column(default=0.0, server_default="0")


class BreakerEvent(Base):
    __tablename__ = "breaker_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(300))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
