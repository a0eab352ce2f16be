"""The billing specialist's tables: accounts, their invoices and the refunds paid on them.

Its own metadata, not the engine's: these tables come from specialists/billing/migrations (version
table alembic_version_billing), applied only where billing is enabled. A refund names the request
that paid it, so it references the engine's record (the engine's history runs first). Every row
is one customer's of one tenant (`CustomerOwned`): tools read them only through `owned()`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.orchestration.specialist import CustomerOwned
from app.state.models import Request


class BillingBase(DeclarativeBase):
    pass


class Account(CustomerOwned, BillingBase):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant", "customer", name="uq_accounts_tenant_customer"),
        UniqueConstraint("tenant", "email", name="uq_accounts_tenant_email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Invoice(CustomerOwned, BillingBase):
    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_owner", "tenant", "customer", "issued_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount_usd: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Refund(CustomerOwned, BillingBase):
    __tablename__ = "refunds"
    # One refund per invoice per request: a redelivered task that calls the tool again gets the
    # existing refund back instead of paying twice.
    __table_args__ = (UniqueConstraint("request_id", "invoice_id", name="uq_refunds_request_invoice"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"))
    # The engine's table by its column object: it lives in the engine's metadata, not this one.
    request_id: Mapped[str] = mapped_column(ForeignKey(Request.__table__.c.id))
    amount_usd: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
