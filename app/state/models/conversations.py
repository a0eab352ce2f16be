"""Conversations and their turns, kept in PostgreSQL so any worker can take any turn."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, ForeignKeyConstraint, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.state.models.base import Base, server_now


class Conversation(Base):
    """Conversation ids are the calling app's, so each tenant has its own: (tenant, id)."""

    __tablename__ = "conversations"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The customer of its first request; a request of another customer cannot continue it.
    customer: Mapped[str | None] = mapped_column(String(200))
    specialist: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())


class Turn(Base):
    """A conversation's history, in PostgreSQL so any worker can take any turn."""

    __tablename__ = "turns"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "conversation_id"],
            ["conversations.tenant", "conversations.id"],
            name="fk_turns_conversation",
        ),
        Index("ix_turns_conversation", "tenant", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=server_now())
