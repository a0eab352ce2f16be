"""The billing specialist's demo data: accounts and their invoices (`switchboard seed`).

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

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from specialists import DEMO_TENANT
from specialists.billing.models import Account, Invoice

__all__ = ["DEMO_TENANT", "account_emails", "invoice_ids", "invoice_owners", "seed"]

# --- Accounts ----------------------------------------------------------------------------------

# (email, name, plan, status, seats)
ACCOUNTS: tuple[tuple[str, str, str, str, int], ...] = (
    ("maria.gonzalez@example.com", "Maria Gonzalez", "pro", "active", 4),
    ("jordan.lee@example.com", "Jordan Lee", "starter", "suspended", 1),
    ("priya.raman@example.org", "Priya Raman", "enterprise", "active", 40),
    ("tom.becker@example.com", "Tom Becker", "starter", "active", 2),
    ("aisha.okafor@example.com", "Aisha Okafor", "pro", "active", 7),
    ("lucas.martin@example.org", "Lucas Martin", "free", "active", 1),
    ("hannah.schmidt@example.com", "Hannah Schmidt", "pro", "active", 3),
    ("kenji.watanabe@example.com", "Kenji Watanabe", "enterprise", "active", 120),
    ("sofia.rossi@example.org", "Sofia Rossi", "starter", "active", 1),
    ("daniel.kim@example.com", "Daniel Kim", "pro", "active", 12),
    ("emma.johansson@example.com", "Emma Johansson", "starter", "active", 3),
    ("m.ferreira@example.com", "Mateus Ferreira", "pro", "active", 5),
    ("olivia.brown@example.org", "Olivia Brown", "free", "active", 1),
    ("ahmed.hassan@example.com", "Ahmed Hassan", "enterprise", "active", 65),
    ("chloe.dubois@example.com", "Chloé Dubois", "starter", "active", 2),
    ("noah.williams@example.org", "Noah Williams", "pro", "suspended", 6),
    ("isabella.costa@example.com", "Isabella Costa", "starter", "active", 1),
    ("liam.oconnor@example.com", "Liam O'Connor", "pro", "active", 9),
    ("yuki.tanaka@example.org", "Yuki Tanaka", "free", "active", 1),
    ("grace.mensah@example.com", "Grace Mensah", "enterprise", "active", 35),
    ("ethan.clarke@example.com", "Ethan Clarke", "starter", "active", 2),
    ("fatima.zahra@example.org", "Fatima Zahra", "pro", "active", 4),
    ("oliver.novak@example.com", "Oliver Novak", "starter", "active", 1),
    ("ava.petrov@example.com", "Ava Petrov", "pro", "active", 15),
    ("samuel.adeyemi@example.org", "Samuel Adeyemi", "free", "active", 1),
    ("mia.andersen@example.com", "Mia Andersen", "starter", "active", 3),
    ("carlos.mendoza@example.com", "Carlos Mendoza", "enterprise", "active", 80),
    ("zoe.fischer@example.org", "Zoe Fischer", "pro", "active", 2),
    ("ravi.patel@example.com", "Ravi Patel", "starter", "active", 2),
    ("ella.murphy@example.com", "Ella Murphy", "pro", "active", 6),
)

# USD per seat per month. Free accounts were on Starter before they downgraded, which is why they
# still have (older) invoices.
SEAT_PRICE = {"starter": Decimal("29.00"), "pro": Decimal("49.00"), "enterprise": Decimal("45.00")}
ENTERPRISE_PLATFORM_FEE = Decimal("500.00")
FIRST_INVOICE_ID = 1001
HISTORY_DAYS = 120


@dataclass(frozen=True)
class _InvoiceDraft:
    email: str
    days_ago: int
    hour: int
    amount: Decimal
    status: str
    monthly: bool


def _monthly_amount(plan: str, seats: int) -> Decimal:
    billed_plan = "starter" if plan == "free" else plan
    amount = SEAT_PRICE[billed_plan] * seats
    if billed_plan == "enterprise":
        amount += ENTERPRISE_PLATFORM_FEE
    return amount


def _account_invoices(index: int, plan: str, status: str, seats: int, email: str) -> list[_InvoiceDraft]:
    """3 to 5 invoices for one account, all derived from its position in ACCOUNTS."""
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
        proration = (SEAT_PRICE[plan] * 12 / 30).quantize(Decimal("0.01"))
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
        for index, (email, _name, plan, status, seats) in enumerate(ACCOUNTS)
        for draft in _account_invoices(index, plan, status, seats, email)
    ]
    # Numbered oldest first, like a real invoice sequence; the sort key is fully deterministic.
    order = {email: i for i, (email, *_rest) in enumerate(ACCOUNTS)}
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
        for i, (email, name, plan, status, _seats) in enumerate(ACCOUNTS)
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
