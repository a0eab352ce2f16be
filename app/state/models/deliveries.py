"""How a result leaves the engine: the reply recorded once per request, and callbacks with each POST attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


class Delivery(Base):
    """The reply handed back for a request; one per request, so a redelivered task cannot send twice."""

    __tablename__ = "deliveries"

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), default="record")
    body: Mapped[str] = mapped_column(Text)
    delivered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())


class Callback(Base):
    """Where a request's result is POSTed once it succeeds; written with the request."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint("status IN ('pending','sending','delivered','failed')", name="ck_callbacks_status"),
    )

    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallbackAttempt(Base):
    """One POST of a callback: its answer or its error."""

    __tablename__ = "callback_attempts"
    __table_args__ = (Index("ix_callback_attempts_request", "request_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("callbacks.request_id"))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(default=0.0)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
