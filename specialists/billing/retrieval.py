"""What the billing specialist looks up before the model writes: the requester's own account, recent
invoices, and the invoices the ticket names that are theirs, with their refund eligibility."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.orchestration.specialist import ToolContext
from app.state.session import session_scope
from specialists.billing.arguments import INVOICE_RE
from specialists.billing.policy import refund_eligibility
from specialists.billing.queries import (
    account_summary,
    invoice_summary,
    own_account,
    own_invoice,
    recent_invoices,
    refunds_for,
)

# Invoices named in one ticket that retrieval looks at; a ticket listing a hundred gets five.
MAX_NAMED_INVOICES = 5


def retrieve(ctx: ToolContext, text: str) -> dict[str, Any]:
    """The requester's own account and recent invoices, and those of the invoices the ticket names
    that are theirs. E-mails in the text are not looked up: the ticket's writer is the request's
    customer, whoever the text claims to be."""
    if ctx.customer is None:
        return {"note": "no verified customer on this request: no account data was looked up"}
    found: dict[str, Any] = {}
    named = list(dict.fromkeys(m.upper() for m in INVOICE_RE.findall(text)))[:MAX_NAMED_INVOICES]
    now = datetime.now(UTC)
    with session_scope() as session:
        account = own_account(session, ctx)
        if account is not None:
            found["account"] = account_summary(account)
            recent = recent_invoices(session, ctx, account.id, 5)
            found["recent_invoices"] = [invoice_summary(i) for i in recent]
        invoices = []
        for invoice_id in named:
            invoice = own_invoice(session, ctx, invoice_id)
            if invoice is None:
                continue
            summary = invoice_summary(invoice)
            eligibility = refund_eligibility(invoice, refunds_for(session, ctx, invoice.id), now)
            summary["refund_eligibility"] = {k: eligibility[k] for k in ("eligible", "reason")}
            invoices.append(summary)
    if invoices:
        found["invoice"] = invoices[0]
        if len(invoices) > 1:
            found["other_named_invoices"] = invoices[1:]
    return found
