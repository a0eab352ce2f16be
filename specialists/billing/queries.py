"""The billing specialist's reads, and how their rows are shown to the model.

Every query goes through `owned()`: the request's tenant and customer are part of each statement,
so a row of anyone else is never read, whatever id or e-mail the model passes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.orchestration.specialist import NOT_FOUND, ToolContext, owned
from specialists.billing.models import Account, Invoice, Refund


def own_account(session: Session, ctx: ToolContext, email: str | None = None) -> Account | None:
    """The request's customer's account; with `email`, only if it is that account's e-mail."""
    stmt = owned(select(Account), ctx)
    if email is not None:
        stmt = stmt.where(func.lower(Account.email) == email.lower())
    return session.scalar(stmt)


def own_invoice(session: Session, ctx: ToolContext, invoice_id: str, *, lock: bool = False) -> Invoice | None:
    stmt = owned(select(Invoice), ctx).where(Invoice.id == invoice_id)
    return session.scalar(stmt.with_for_update() if lock else stmt)


def account_summary(account: Account) -> dict[str, Any]:
    return {
        "email": account.email,
        "name": account.name,
        "plan": account.plan,
        "status": account.status,
        "customer_since": account.created_at.date().isoformat() if account.created_at else None,
    }


def invoice_summary(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "period": invoice.period,
        # A string, so the model quotes the exact figure instead of a float rendering of it.
        "amount_usd": str(invoice.amount_usd),
        "status": invoice.status,
        "issued_at": invoice.issued_at.date().isoformat(),
    }


def recent_invoices(session: Session, ctx: ToolContext, account_id: int, limit: int) -> list[Invoice]:
    stmt = (
        owned(select(Invoice), ctx)
        .where(Invoice.account_id == account_id)
        .order_by(Invoice.issued_at.desc(), Invoice.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def refunds_for(session: Session, ctx: ToolContext, invoice_id: str) -> list[Refund]:
    stmt = owned(select(Refund), ctx).where(Refund.invoice_id == invoice_id).order_by(Refund.id)
    return list(session.scalars(stmt))


def no_invoice(invoice_id: str) -> dict[str, Any]:
    # The same words for an invoice of another customer as for one that does not exist.
    return {"error": f"invoice {invoice_id} {NOT_FOUND}"}


def no_account(email: str) -> dict[str, Any]:
    return {"error": f"account {email} {NOT_FOUND}; only the customer's own account can be looked up"}
