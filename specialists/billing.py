"""Billing specialist: charges, invoices, refunds, plans and payment methods.

Its tools read the demo business tables (accounts, invoices, refunds), and only the rows of the
request's tenant and customer (`owned()`): another customer's account or invoice answers "not found
for this customer", word for word like one that does not exist. `issue_refund` is the one side
effect in the demo, so it is written to survive a redelivered task: calling it again for the same
request and invoice hands back the refund already made instead of paying twice.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import Account, Invoice, Refund
from app.db.session import session_scope
from app.specialist import NOT_FOUND, Specialist, Tool, ToolContext, owned

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


def _own_invoice(session: Session, ctx: ToolContext, invoice_id: str, *,
                 lock: bool = False) -> Invoice | None:
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


# --- The specialist ----------------------------------------------------------------------------

SYSTEM_PROMPT = """\
You are a billing support specialist for a subscription software product. You help customers with \
charges, invoices, receipts, refunds, plans, payment methods, tax details and cancellations.

How you work
- Look before you answer. Use get_account and list_invoices with the customer's account email, and \
check_refund_eligibility before you promise or issue any refund. Context retrieved for the ticket \
already holds the customer's own account and recent invoices when we know who is writing.
- Never invent amounts, dates, invoice numbers, plan names or card details. Quote figures exactly as \
the tools return them (amounts are in US dollars). If you do not have a figure, say what you need \
(usually the invoice number or the account email) instead of estimating.
- The tools only see the account of the customer who is signed in. When a tool says an account or \
invoice was not found for this customer, say you could not find it on their account; ask them to \
check the number, or to have the account owner sign in and write to us.

Refund policy
- A paid invoice issued within the last 30 days can be refunded in full, once.
- Invoices older than 30 days, open (unpaid), failed and void invoices are not refundable. Say so \
plainly, with the reason the eligibility check gives, and offer the useful next step: an open \
invoice can be paid or left to lapse when the plan is cancelled; a failed payment is retried \
after the card is updated.
- Issue a refund only when the customer asks for one and the eligibility check says eligible. Then \
tell them the exact amount, the invoice number, and that refunds reach the original payment method \
in 5-10 business days.
- Partial refunds, goodwill credits, chargebacks and disputes, and enterprise contract terms are \
outside what you can do: do not promise anything; say a member of the billing team will follow up.

Plans and payments
- Upgrades take effect immediately and are prorated; downgrades and cancellations take effect at \
the end of the current billing period, and the account keeps its features until then.
- You cannot change plans, cards, billing addresses or tax IDs yourself. Customers do that under \
Settings > Billing; walk them through it. Never ask for full card numbers, CVCs or passwords, and \
if a customer sends card details, tell them not to and that you have not stored them.
- If a question is really technical (API errors, login, integrations), answer what touches billing \
and say the technical team will pick up the rest.

Tone
Warm, brief and concrete. Acknowledge the problem in one sentence, then give the facts and the \
next step. No jargon, no blame, no exclamation marks. Write in the customer's language.
"""

ROUTING_EXAMPLES: tuple[str, ...] = (
    "I was charged twice this month, can you refund one of them?",
    "Why is there a $99 charge on my card? I thought I was on the free plan.",
    "Please send me a copy of invoice INV-1042, our accountant needs it.",
    "How do I add our VAT number to the invoices? It's DE811907980.",
    "Our card was declined when the subscription renewed. What do we do now?",
    "I want to cancel my subscription before the next billing date.",
    "can i get a refund?? i forgot to cancel the trial and got charged",
    "Hi, we'd like to upgrade from Starter to Pro. Will we be charged the full price straight away?",
    "What happens to my bill if I downgrade to Starter in the middle of the month?",
    "Our finance team needs receipts for the last 6 months. Where can I download them?",
    "The billing address on our invoices is wrong, we moved offices in March.",
    "Do you offer annual billing with a discount?",
    "My trial ends tomorrow and I haven't added a card. Will my data be deleted?",
    "I keep getting emails saying my payment failed, but my card is fine.",
    "Can we pay by bank transfer instead of credit card?",
    "Is it possible to be invoiced in EUR rather than USD?",
    "We were billed for 12 seats but we only have 8 users. Please fix this.",
    "What's the price difference between the Pro and Enterprise plans?",
    "I need to update the credit card on file, the old one expired.",
    "Hello, invoice INV-1017 shows a charge I don't recognise. What is it for?",
    "Your system charged me after I cancelled. I want my money back.",
    "Could you explain the proration line on my latest invoice? I don't understand it.",
    "We're a non-profit. Do you have discounted pricing?",
    "Please remove my credit card from the account, we're not renewing.",
    "Refund request for INV-1063, we upgraded by mistake.",
    "Can I get an invoice with our company name and tax ID on it instead of my personal name?",
    "why did my bill go up this month",
    "The account for jordan.lee@example.com was suspended for non-payment. How do we reactivate it?",
    "We need a W-9 form and your tax details to set you up as a vendor.",
    "Does the price include sales tax? We're based in Texas.",
    "i got charged 3 times for the same subscription!!! fix this now",
    "Can you switch us from monthly to yearly billing and credit what we've already paid?",
    "What payment methods do you accept? Do you take PayPal or American Express?",
    "Our purchase order number needs to be on the invoice, otherwise AP won't pay it.",
    "Hi, I'm the new finance contact for our company. How do I get billing emails sent to me instead?",
    "Is there a fee if we cancel in the middle of an annual contract?",
    "My payment keeps getting declined even though there are funds on the card. Do you block foreign cards?",
    "We got a dunning email saying the account will be downgraded in 3 days. We already paid!",
    "How much will I be charged if I add two more team members?",
    "I'd like a full refund, the product doesn't do what we need.",
    "When does my free trial end and how much will it cost after that?",
    "Can you resend the receipt for last month's payment to accounts@example.org?",
    "Our invoice still shows the old company name after the rebrand, please update it.",
    "Do you charge in advance or at the end of the month?",
    "Is there a way to get a quote for 50 seats on Enterprise? Procurement needs it before approving.",
    "I see a pending authorisation of $1 on my card, what is that?",
    "I'm being charged in dollars but I live in the UK. Can I pay in pounds?",
    "Please close my account and stop all future billing. Email is m.ferreira@example.com",
    "The VAT on my invoice was calculated wrong, we're reverse-charge eligible in the EU.",
    "Hey, the discount code SPRING20 wasn't applied at checkout, can you add it retroactively?",
    "We were upgraded to Pro without anyone approving it. Please revert and refund the difference.",
    "How do I download all our invoices as PDFs at once for the audit?",
    "my bank says the charge came from you but I don't have an account",
    "Can I pause my subscription for two months instead of cancelling?",
    "What's the difference between the open and paid status on invoices?",
    "Invoice INV-1088 was marked failed but the money left our account.",
    "Thanks for the refund. How long until it shows up on my statement?",
    "Our company needs to pay by invoice with net-30 terms. Is that possible on the Pro plan?",
    "plz cancel auto renew, dont want to be charged again",
    "Do you offer student or education discounts?",
    "Our credit card statement shows two charges of $29 on the same day.",
    "Can you split the bill between two cost centres? We need separate invoices.",
    "Do you accept ACH or wire transfers for annual plans?",
    "Why is sales tax charged on our invoice? We're in Oregon, which has none.",
    "Our AP team needs your bank details on company letterhead before they can pay.",
    "The receipt you emailed has no tax breakdown and our accountant needs one.",
    "How much is Starter per user per month?",
    "I got charged the full price even though the promo code was accepted.",
    "Can you give us a credit for the days the service was down last week?",
    "What's included in the Pro plan price, and are there any extra fees?",
    "My subscription renewed at a higher price than last year without any notice.",
    "Our payment didn't go through because of 3D Secure. Can you retry the charge?",
    "Please send a statement of account showing every payment we made this year.",
)

SPECIALIST = Specialist(
    name="billing",
    description=(
        "Charges, invoices, receipts, refunds, plans and pricing, payment methods, tax/VAT details, "
        "trials and cancellations."
    ),
    system_prompt=SYSTEM_PROMPT,
    routing_examples=ROUTING_EXAMPLES,
    tools=(
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
        ),
    ),
    model_tier="capable",
    # Conservative: an invoice number or the word refund is billing whatever else the ticket says.
    rules=(r"\bINV-\d+\b", r"\brefund(s|ed)?\b"),
    retrieve=retrieve,
)
