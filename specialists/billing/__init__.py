"""Billing specialist: charges, invoices, refunds, plans and payment methods.

A bundled example of the specialist contract, kept as a package: its tools (tools.py) read and
change its own tables (models.py, migrations/), its prompt and routing examples are files beside
the code (prompt.md, examples.txt), and seed.py loads its demo data.
"""

from __future__ import annotations

from app.orchestration.specialist import Specialist
from specialists.billing.seed import seed
from specialists.billing.tools import REFUND_APPROVAL_LIMIT, TOOLS, retrieve

SPECIALIST = Specialist.from_package(
    __name__,
    name="billing",
    description=(
        "Charges, invoices, receipts, refunds, plans and pricing, payment methods, tax/VAT details, "
        "trials and cancellations."
    ),
    tools=TOOLS,
    model_tier="capable",
    # Conservative: an invoice number or the word refund is billing whatever else the ticket says.
    rules=(r"\bINV-\d+\b", r"\brefund(s|ed)?\b"),
    retrieve=retrieve,
    seed=seed,
    tenant_settings=(REFUND_APPROVAL_LIMIT,),
)
