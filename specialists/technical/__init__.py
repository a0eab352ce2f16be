"""Technical specialist: API errors, integrations, login and SSO, imports/exports, the apps.

A bundled example of the specialist contract, kept as a package: its tools (tools.py) read its own
tables (models.py, migrations/): the knowledge base and the status page; its prompt and routing
examples are files beside the code (prompt.md, examples.txt), and seed.py loads its demo data.
"""

from __future__ import annotations

from app.orchestration.specialist import Specialist
from specialists.technical.seed import seed
from specialists.technical.tools import TOOLS, retrieve

SPECIALIST = Specialist.from_package(
    __name__,
    name="technical",
    description=(
        "Product and API problems: errors, outages and slowness, webhooks, login/SSO/2FA, SDKs, "
        "integrations, imports and exports, custom domains, email delivery, mobile apps."
    ),
    tools=TOOLS,
    model_tier="capable",
    # Conservative: an HTTP error status or a stack trace is a technical ticket whatever else it says.
    rules=(r"\b[45]\d\d error\b", r"\bstack ?trace\b", r"\btraceback\b"),
    retrieve=retrieve,
    seed=seed,
    # Undecidable tickets come here: most of them are "it does not work".
    fallback=True,
)
