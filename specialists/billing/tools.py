"""The billing specialist's four tools, over its own tables (accounts, invoices, refunds).

They read only the rows of the request's tenant and customer (`owned()`): another customer's
account or invoice answers "not found for this customer", word for word like one that does not
exist. `issue_refund` is the one side effect in the demo, so it is written to survive a redelivered
task: calling it again for the same request and invoice hands back the refund already made instead
of paying twice. A refund above the tenant's `billing.refund_approval_above_usd` (default $500)
waits for a person's approval.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from app.orchestration.specialist import Tool, ToolContext
from app.state.session import session_scope
from specialists.billing.arguments import EmailArgs, InvoiceArgs, IssueRefundArgs, ListInvoicesArgs
from specialists.billing.models import Refund
from specialists.billing.policy import REFUNDED, refund_eligibility, refund_needs_approval
from specialists.billing.queries import (
    account_summary,
    invoice_summary,
    no_account,
    no_invoice,
    own_account,
    own_invoice,
    recent_invoices,
    refunds_for,
)


def _refund_summary(refund: Refund, *, replayed: bool) -> dict[str, Any]:
    return {
        "refund_id": refund.id,
        "invoice_id": refund.invoice_id,
        "amount_usd": str(refund.amount_usd),
        "reason": refund.reason,
        "created_at": refund.created_at.isoformat(),
        # True when this call found the refund an earlier attempt of the same request had made.
        "replayed": replayed,
        "note": "refunds reach the original payment method in 5-10 business days",
    }


# --- Tools -------------------------------------------------------------------------------------


def get_account(ctx: ToolContext, args: EmailArgs) -> dict[str, Any]:
    with session_scope() as session:
        account = own_account(session, ctx, args.email)
        if account is None:
            return no_account(args.email)
        return account_summary(account)


def list_invoices(ctx: ToolContext, args: ListInvoicesArgs) -> dict[str, Any]:
    with session_scope() as session:
        account = own_account(session, ctx, args.email)
        if account is None:
            return no_account(args.email)
        invoices = recent_invoices(session, ctx, account.id, args.limit)
        return {"email": account.email, "invoices": [invoice_summary(i) for i in invoices]}


def check_refund_eligibility(ctx: ToolContext, args: InvoiceArgs) -> dict[str, Any]:
    with session_scope() as session:
        invoice = own_invoice(session, ctx, args.invoice_id)
        if invoice is None:
            return no_invoice(args.invoice_id)
        return refund_eligibility(invoice, refunds_for(session, ctx, invoice.id), datetime.now(UTC))


def issue_refund(ctx: ToolContext, args: IssueRefundArgs) -> dict[str, Any]:
    with session_scope() as session:
        # The row lock serialises two requests refunding the same invoice at once; the loser then
        # sees the winner's refund and is refused instead of paying a second time.
        invoice = own_invoice(session, ctx, args.invoice_id, lock=True)
        if invoice is None:
            return no_invoice(args.invoice_id)
        refunds = refunds_for(session, ctx, invoice.id)
        mine = next((r for r in refunds if r.request_id == ctx.request_id), None)
        if mine is not None:
            # A redelivered task calling again: the invoice is already "refunded" by this very
            # request, so report that refund rather than re-running the policy and refusing it.
            return _refund_summary(mine, replayed=True)
        verdict = refund_eligibility(invoice, refunds, datetime.now(UTC))
        if not verdict["eligible"]:
            return {"error": f"refund refused for {invoice.id}: {verdict['reason']}", "refunded": False}
        stmt = (
            insert(Refund)
            .values(
                tenant=invoice.tenant,
                customer=invoice.customer,
                invoice_id=invoice.id,
                request_id=ctx.request_id,
                amount_usd=invoice.amount_usd,
                reason=args.reason,
            )
            .on_conflict_do_nothing(index_elements=["request_id", "invoice_id"])
        )
        session.execute(stmt)
        refund = session.scalars(
            select(Refund).where(Refund.request_id == ctx.request_id, Refund.invoice_id == invoice.id)
        ).one()
        invoice.status = REFUNDED
        return _refund_summary(refund, replayed=False)


# --- The tools, in the order the model sees them -------------------------------------------------

TOOLS: tuple[Tool[Any], ...] = (
    Tool(
        name="get_account",
        description="Look up an account by email: the customer's name, plan and account status.",
        args=EmailArgs,
        run=get_account,
    ),
    Tool(
        name="list_invoices",
        description="List an account's most recent invoices, newest first: id, period, amount, status.",
        args=ListInvoicesArgs,
        run=list_invoices,
    ),
    Tool(
        name="check_refund_eligibility",
        description=(
            "Check whether an invoice can be refunded under the refund policy (paid, issued within "
            "the last 30 days, not refunded already) and why."
        ),
        args=InvoiceArgs,
        run=check_refund_eligibility,
    ),
    Tool(
        name="issue_refund",
        description=(
            "Refund an eligible invoice in full to the original payment method. Only after the customer "
            "asked for a refund and check_refund_eligibility said eligible. Safe to retry."
        ),
        args=IssueRefundArgs,
        run=issue_refund,
        side_effect=True,
        approval=refund_needs_approval,
    ),
)
