"""Technical specialist: API errors, integrations, login and SSO, imports/exports, the apps.

A bundled example of the specialist contract, kept as a small package; this module wires it:
tools.py (two read-only tools) with their arguments (arguments.py), knowledge_base.py (full-text
search) and status_page.py over its own tables (models.py, migrations/), retrieval.py (context
before the model writes), the prompt and routing examples as files (prompt.md, examples.txt), and
its demo data in data/, loaded by seed.py. It has no policy of its own: every tool only reads.
"""

from __future__ import annotations

from app.orchestration.specialist import Specialist
from specialists.technical.retrieval import retrieve
from specialists.technical.seed import seed
from specialists.technical.tools import TOOLS

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
