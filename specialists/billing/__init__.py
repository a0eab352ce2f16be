"""Billing specialist: charges, invoices, refunds, plans and payment methods.

A bundled example of the specialist contract, kept as a small package; this module wires it:
tools.py (the four tools) with their arguments (arguments.py) and reads (queries.py), policy.py (the
refund rules and approval limit), retrieval.py (context before the model writes), its own tables
(models.py, migrations/), the prompt and routing examples as files (prompt.md, examples.txt), and
its demo data in data/, loaded by seed.py.
"""

from __future__ import annotations

from app.orchestration.specialist import Specialist
from specialists.billing.policy import REFUND_APPROVAL_LIMIT
from specialists.billing.retrieval import retrieve
from specialists.billing.seed import seed
from specialists.billing.tools import TOOLS

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
