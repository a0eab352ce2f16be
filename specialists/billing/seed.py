"""The billing specialist's demo data: accounts and their invoices (`switchboard seed`).

The accounts and the plans' prices are data files beside this module (data/accounts.csv,
data/plans.csv); the invoices are derived from them here, so a fresh database gets the same rows.

`seed()` is idempotent: every insert is keyed on a natural key (email, invoice id) and skips rows
that exist, so re-running it neither duplicates nor overwrites anything. In particular an invoice
refunded during a demo stays refunded.

Every row belongs to the `default` tenant; each account's customer id is its e-mail (what the
demo's apps authenticate their users by), and its invoices are that customer's.

Invoice dates are relative to the day the seed first runs, spread over the last 120 days, so a
fresh database always has both refundable invoices (paid, under 30 days old) and ones that are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.orchestration.specialist import package_rows
from specialists import DEMO_TENANT
from specialists.billing.models import Account, Invoice

__all__ = ["DEMO_TENANT", "account_emails", "accounts", "invoice_ids", "invoice_owners", "seed"]

_PACKAGE = __name__.rpartition(".")[0]
FIRST_INVOICE_ID = 1001
HISTORY_DAYS = 120


@cache
def accounts() -> tuple[tuple[str, str, str, str, int], ...]:
    """(email, name, plan, status, seats) of each demo account, in data/accounts.csv's order."""
    rows = package_rows(_PACKAGE, "data/accounts.csv")
    return tuple((r["email"], r["name"], r["plan"], r["status"], int(r["seats"])) for r in rows)


@cache
def plans() -> dict[str, tuple[Decimal, Decimal]]:
    """Each plan's price in USD per seat per month and its platform fee per month (data/plans.csv).
    Free accounts were on Starter before they downgraded, which is why they still have (older)
    invoices."""
    rows = package_rows(_PACKAGE, "data/plans.csv")
    return {r["plan"]: (Decimal(r["seat_price_usd"]), Decimal(r["platform_fee_usd"])) for r in rows}


@dataclass(frozen=True)
class _InvoiceDraft:
    email: str
    days_ago: int
    hour: int
    amount: Decimal
    status: str
    monthly: bool


def _monthly_amount(plan: str, seats: int) -> Decimal:
    seat_price, platform_fee = plans()["starter" if plan == "free" else plan]
    amount = seat_price * seats
    if platform_fee:
        amount += platform_fee
    return amount


def _account_invoices(index: int, plan: str, status: str, seats: int, email: str) -> list[_InvoiceDraft]:
    """3 to 5 invoices for one account, all derived from its position in `accounts()`."""
    # Each account has its own billing day; monthly invoices go back from there, 30 days apart,
    # and four of them always fit in the 120-day history.
    offset = (index * 11) % 29 + 1
    months = 3 + index % 2
    if plan == "free":
        # Downgraded to Free a while ago: only the older paid months remain.
        offset += 31
        months = 3
    monthly = _monthly_amount(plan, seats)
    drafts = [
        _InvoiceDraft(email, offset + 30 * m, (index * 5 + m * 3) % 24, monthly, "paid", True)
        for m in range(months)
    ]
    if index % 3 == 0 and plan != "free":
        # A mid-cycle seat added and billed prorated; every other one of these was voided and
        # re-issued, as happens when a seat count is corrected.
        proration = (plans()[plan][0] * 12 / 30).quantize(Decimal("0.01"))
        extra_status = "void" if index % 6 == 0 else "paid"
        drafts.append(_InvoiceDraft(email, offset + 12, (index * 7) % 24, proration, extra_status, False))
    return _with_statuses(index, status, drafts)


def _with_statuses(index: int, account_status: str, drafts: list[_InvoiceDraft]) -> list[_InvoiceDraft]:
    drafts = sorted(drafts, key=lambda d: d.days_ago)
    monthly = [d for d in drafts if d.monthly]
    latest, previous = monthly[0], monthly[1]
    replace: dict[_InvoiceDraft, str] = {}
    if account_status == "suspended":
        # Suspended for non-payment: the last two renewals failed.
        replace = {latest: "failed", previous: "failed"}
    elif latest.days_ago <= 12 and index % 4 in (1, 2):
        # Issued in the last few days and not yet collected.
        replace = {latest: "open"}
    elif index % 7 == 3:
        # The card failed once and the customer paid the next month: a dunning story.
        replace = {previous: "failed"}
    return [
        _InvoiceDraft(d.email, d.days_ago, d.hour, d.amount, replace.get(d, d.status), d.monthly)
        for d in drafts
    ]


def _invoice_rows(now: datetime) -> list[dict[str, object]]:
    drafts = [
        draft
        for index, (email, _name, plan, status, seats) in enumerate(accounts())
        for draft in _account_invoices(index, plan, status, seats, email)
    ]
    # Numbered oldest first, like a real invoice sequence; the sort key is fully deterministic.
    order = {email: i for i, (email, *_rest) in enumerate(accounts())}
    drafts.sort(key=lambda d: (-d.days_ago, d.hour, order[d.email]))
    rows = []
    for number, draft in enumerate(drafts, start=FIRST_INVOICE_ID):
        day = (now - timedelta(days=draft.days_ago)).replace(
            hour=draft.hour, minute=0, second=0, microsecond=0
        )
        rows.append(
            {
                "id": f"INV-{number}",
                "email": draft.email,
                "amount_usd": draft.amount,
                "status": draft.status,
                "period": day.strftime("%Y-%m") if draft.monthly else day.strftime("%Y-%m-%d"),
                "issued_at": day,
            }
        )
    return rows


# --- Seeding -----------------------------------------------------------------------------------


def _customer_since(index: int, now: datetime) -> datetime:
    # Every account signed up before its oldest invoice, some of them years ago.
    return now - timedelta(days=HISTORY_DAYS + 30 + (index * 47) % 900)


def _seed_accounts(session: Session, now: datetime) -> dict[str, int]:
    rows = [
        {
            "tenant": DEMO_TENANT,
            "customer": email,
            "email": email,
            "name": name,
            "plan": plan,
            "status": status,
            "created_at": _customer_since(i, now),
        }
        for i, (email, name, plan, status, _seats) in enumerate(accounts())
    ]
    session.execute(insert(Account).values(rows).on_conflict_do_nothing(index_elements=["tenant", "email"]))
    emails = [row["email"] for row in rows]
    found = session.execute(
        select(Account.email, Account.id).where(Account.tenant == DEMO_TENANT, Account.email.in_(emails))
    )
    return {email: account_id for email, account_id in found}


def _seed_invoices(session: Session, account_ids: dict[str, int], now: datetime) -> None:
    rows = [
        {key: value for key, value in row.items() if key != "email"}
        | {"account_id": account_ids[str(row["email"])], "tenant": DEMO_TENANT, "customer": row["email"]}
        for row in _invoice_rows(now)
    ]
    session.execute(insert(Invoice).values(rows).on_conflict_do_nothing(index_elements=["id"]))


def seed(session: Session) -> dict[str, int]:
    """Insert the accounts and invoices that are missing; the row count of each table."""
    now = datetime.now(UTC)
    _seed_invoices(session, _seed_accounts(session, now), now)
    session.flush()
    return {
        "accounts": int(session.scalar(select(func.count()).select_from(Account)) or 0),
        "invoices": int(session.scalar(select(func.count()).select_from(Invoice)) or 0),
    }


def account_emails(session: Session) -> list[str]:
    stmt = select(Account.email).where(Account.tenant == DEMO_TENANT).order_by(Account.id)
    return list(session.scalars(stmt))


def invoice_ids(session: Session) -> list[str]:
    # Numeric order, so INV-1010 follows INV-1009 rather than INV-1001.
    ids = session.scalars(select(Invoice.id).where(Invoice.tenant == DEMO_TENANT))
    return sorted(ids, key=lambda i: (len(i), i))


def invoice_owners(session: Session) -> dict[str, str]:
    """Each demo invoice's customer: a ticket about an invoice is written by the customer it bills."""
    rows = session.execute(select(Invoice.id, Invoice.customer).where(Invoice.tenant == DEMO_TENANT))
    return {row.id: row.customer for row in rows}
