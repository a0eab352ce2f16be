"""The billing policy: which invoices may be refunded (paid, within the refund window, not refunded
yet) and which refunds wait for a person (above the tenant's `billing.refund_approval_above_usd`,
default $500)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from app.orchestration import tenant_settings
from app.orchestration.specialist import TenantSettingDef, ToolContext
from app.state.session import session_scope
from specialists.billing.arguments import IssueRefundArgs
from specialists.billing.models import Invoice, Refund
from specialists.billing.queries import own_invoice

REFUND_WINDOW = timedelta(days=30)
REFUNDED = "refunded"


def _days_ago(days: int) -> str:
    return "today" if days == 0 else "1 day ago" if days == 1 else f"{days} days ago"


def refund_eligibility(invoice: Invoice, refunds: list[Refund], now: datetime) -> dict[str, Any]:
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
        invoice = own_invoice(session, ctx, args.invoice_id)
        amount = invoice.amount_usd if invoice is not None else None
    if amount is None or amount <= limit:
        return None  # not this customer's invoice, or none: the tool itself refuses it
    return f"refund of ${amount} for {args.invoice_id} is above the ${limit} approval limit"
