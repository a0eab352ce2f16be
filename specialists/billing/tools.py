"""The billing specialist's tools and retrieval, over its own tables (accounts, invoices, refunds).

They read only the rows of the request's tenant and customer (`owned()`): another customer's
account or invoice answers "not found for this customer", word for word like one that does not
exist. `issue_refund` is the one side effect in the demo, so it is written to survive a redelivered
task: calling it again for the same request and invoice hands back the refund already made instead
of paying twice. A refund above the tenant's `billing.refund_approval_above_usd` (default $500)
waits for a person's approval.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.orchestration import tenant_settings
from app.orchestration.specialist import NOT_FOUND, TenantSettingDef, Tool, ToolContext, owned
from app.state.session import session_scope
from specialists.billing.models import Account, Invoice, Refund

REFUND_WINDOW = timedelta(days=30)
REFUNDED = "refunded"

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
INVOICE_RE = re.compile(r"\bINV-\d+\b", re.IGNORECASE)
_INVOICE_ID_RE = re.compile(r"^INV-\d+$")


# --- Tool arguments ----------------------------------------------------------------------------


def _normalise_email(value: str) -> str:
    value = value.strip().lower()
    if not EMAIL_RE.fullmatch(value):
        raise ValueError("expected an email address such as jane.doe@example.com")
    return value


def _normalise_invoice_id(value: str) -> str:
    # Models and customers write "inv-1042" or " INV-1042 "; the stored ids are upper case.
    value = value.strip().upper()
    if not _INVOICE_ID_RE.match(value):
        raise ValueError("invoice ids look like INV-1042")
    return value


Email = Annotated[str, AfterValidator(_normalise_email)]
InvoiceId = Annotated[str, AfterValidator(_normalise_invoice_id)]


class EmailArgs(BaseModel):
    email: Email = Field(description="The account's email address, exactly as the customer gave it.")


class ListInvoicesArgs(BaseModel):
    email: Email = Field(description="The account's email address.")
    limit: int = Field(5, ge=1, le=24, description="How many of the most recent invoices to return (1-24).")


class InvoiceArgs(BaseModel):
    invoice_id: InvoiceId = Field(description="The invoice number as printed on the invoice, e.g. INV-1042.")


class IssueRefundArgs(BaseModel):
    invoice_id: InvoiceId = Field(description="The invoice to refund in full, e.g. INV-1042.")
    reason: str = Field(
        min_length=3,
        max_length=500,
        description="Why the refund is being issued, in the customer's terms (kept on the refund record).",
    )


# --- Queries -----------------------------------------------------------------------------------
# Every query goes through `owned()`: the request's tenant and customer are part of each statement,
# so a row of anyone else is never read, whatever id or e-mail the model passes.


def _own_account(session: Session, ctx: ToolContext, email: str | None = None) -> Account | None:
    """The request's customer's account; with `email`, only if it is that account's e-mail."""
    stmt = owned(select(Account), ctx)
    if email is not None:
        stmt = stmt.where(func.lower(Account.email) == email.lower())
    return session.scalar(stmt)


def _own_invoice(
    session: Session, ctx: ToolContext, invoice_id: str, *, lock: bool = False
) -> Invoice | None:
    stmt = owned(select(Invoice), ctx).where(Invoice.id == invoice_id)
    return session.scalar(stmt.with_for_update() if lock else stmt)


def _account_summary(account: Account) -> dict[str, Any]:
    return {
        "email": account.email,
        "name": account.name,
        "plan": account.plan,
        "status": account.status,
        "customer_since": account.created_at.date().isoformat() if account.created_at else None,
    }


def _invoice_summary(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "period": invoice.period,
        # A string, so the model quotes the exact figure instead of a float rendering of it.
        "amount_usd": str(invoice.amount_usd),
        "status": invoice.status,
        "issued_at": invoice.issued_at.date().isoformat(),
    }


def _recent_invoices(session: Session, ctx: ToolContext, account_id: int, limit: int) -> list[Invoice]:
    stmt = (
        owned(select(Invoice), ctx)
        .where(Invoice.account_id == account_id)
        .order_by(Invoice.issued_at.desc(), Invoice.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def _refunds_for(session: Session, ctx: ToolContext, invoice_id: str) -> list[Refund]:
    stmt = owned(select(Refund), ctx).where(Refund.invoice_id == invoice_id).order_by(Refund.id)
    return list(session.scalars(stmt))


def _days_ago(days: int) -> str:
    return "today" if days == 0 else "1 day ago" if days == 1 else f"{days} days ago"


def _eligibility(invoice: Invoice, refunds: list[Refund], now: datetime) -> dict[str, Any]:
    """The refund policy, in one place: paid, issued within the window, not refunded yet."""
    age_days = (now - invoice.issued_at).days
    verdict: dict[str, Any] = {
        "invoice_id": invoice.id,
        "amount_usd": str(invoice.amount_usd),
        "status": invoice.status,
        "issued_at": invoice.issued_at.date().isoformat(),
        "days_since_issue": age_days,
    }
    if refunds or invoice.status == REFUNDED:
        reason = "this invoice has already been refunded"
        if refunds:
            reason += f" (on {refunds[0].created_at.date().isoformat()})"
        return verdict | {"eligible": False, "reason": reason}
    if invoice.status != "paid":
        explain = {
            "open": "it has not been paid yet, so there is nothing to refund",
            "failed": "the payment for it failed, so no money was collected",
            "void": "it was voided and never charged",
        }.get(invoice.status, f"its status is {invoice.status!r}")
        return verdict | {"eligible": False, "reason": f"only paid invoices can be refunded; {explain}"}
    if now - invoice.issued_at > REFUND_WINDOW:
        return verdict | {
            "eligible": False,
            "reason": f"issued {_days_ago(age_days)}; paid invoices are refundable within "
            f"{REFUND_WINDOW.days} days of issue",
        }
    return verdict | {
        "eligible": True,
        "reason": f"paid and issued {_days_ago(age_days)}, within the {REFUND_WINDOW.days}-day refund window",
    }


def _no_invoice(invoice_id: str) -> dict[str, Any]:
    # The same words for an invoice of another customer as for one that does not exist.
    return {"error": f"invoice {invoice_id} {NOT_FOUND}"}


def _no_account(email: str) -> dict[str, Any]:
    return {"error": f"account {email} {NOT_FOUND}; only the customer's own account can be looked up"}


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
        account = _own_account(session, ctx, args.email)
        if account is None:
            return _no_account(args.email)
        return _account_summary(account)


def list_invoices(ctx: ToolContext, args: ListInvoicesArgs) -> dict[str, Any]:
    with session_scope() as session:
        account = _own_account(session, ctx, args.email)
        if account is None:
            return _no_account(args.email)
        invoices = _recent_invoices(session, ctx, account.id, args.limit)
        return {"email": account.email, "invoices": [_invoice_summary(i) for i in invoices]}


def check_refund_eligibility(ctx: ToolContext, args: InvoiceArgs) -> dict[str, Any]:
    with session_scope() as session:
        invoice = _own_invoice(session, ctx, args.invoice_id)
        if invoice is None:
            return _no_invoice(args.invoice_id)
        return _eligibility(invoice, _refunds_for(session, ctx, invoice.id), datetime.now(UTC))


def issue_refund(ctx: ToolContext, args: IssueRefundArgs) -> dict[str, Any]:
    with session_scope() as session:
        # The row lock serialises two requests refunding the same invoice at once; the loser then
        # sees the winner's refund and is refused instead of paying a second time.
        invoice = _own_invoice(session, ctx, args.invoice_id, lock=True)
        if invoice is None:
            return _no_invoice(args.invoice_id)
        refunds = _refunds_for(session, ctx, invoice.id)
        mine = next((r for r in refunds if r.request_id == ctx.request_id), None)
        if mine is not None:
            # A redelivered task calling again: the invoice is already "refunded" by this very
            # request, so report that refund rather than re-running the policy and refusing it.
            return _refund_summary(mine, replayed=True)
        verdict = _eligibility(invoice, refunds, datetime.now(UTC))
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


def _non_negative_usd(value: Any) -> Decimal:
    amount = Decimal(str(value))
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"expected an amount in USD of 0 or more, not {value!r}")
    return amount


REFUND_APPROVAL_LIMIT = TenantSettingDef(
    name="billing.refund_approval_above_usd",
    description="refunds above this many USD wait for a person's approval",
    default="500",
    parse=_non_negative_usd,
)


def refund_needs_approval(ctx: ToolContext, args: IssueRefundArgs) -> str | None:
    """Refunds above the tenant's limit wait for a person; an unreadable limit fails closed."""
    try:
        limit = tenant_settings.value(ctx.tenant, REFUND_APPROVAL_LIMIT)
    except tenant_settings.SettingError as exc:
        return f"the refund approval limit cannot be read ({exc})"
    with session_scope() as session:
        invoice = _own_invoice(session, ctx, args.invoice_id)
        amount = invoice.amount_usd if invoice is not None else None
    if amount is None or amount <= limit:
        return None  # not this customer's invoice, or none: the tool itself refuses it
    return f"refund of ${amount} for {args.invoice_id} is above the ${limit} approval limit"


# --- Retrieval ---------------------------------------------------------------------------------

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
        account = _own_account(session, ctx)
        if account is not None:
            found["account"] = _account_summary(account)
            recent = _recent_invoices(session, ctx, account.id, 5)
            found["recent_invoices"] = [_invoice_summary(i) for i in recent]
        invoices = []
        for invoice_id in named:
            invoice = _own_invoice(session, ctx, invoice_id)
            if invoice is None:
                continue
            summary = _invoice_summary(invoice)
            eligibility = _eligibility(invoice, _refunds_for(session, ctx, invoice.id), now)
            summary["refund_eligibility"] = {k: eligibility[k] for k in ("eligible", "reason")}
            invoices.append(summary)
    if invoices:
        found["invoice"] = invoices[0]
        if len(invoices) > 1:
            found["other_named_invoices"] = invoices[1:]
    return found


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
