"""business rows owned: moved to the bundled specialists' own histories; empty here

Reviewed by hand. This revision added tenant and customer to the bundled specialists' business
tables (accounts, invoices, refunds, kb_articles, service_status) while those tables were still in
the engine's history. They have left it: the same change is billing_0002 and technical_0002 in
specialists/billing/migrations and specialists/technical/migrations, which see when a database
already ran it here and do nothing then. The revision stays, empty, so a database stamped with it
still finds its place in the engine's history.

Revision ID: 0009_business_rows_owned
Revises: 0008_conversations_per_tenant
"""

from __future__ import annotations

revision = "0009_business_rows_owned"
down_revision = "0008_conversations_per_tenant"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
