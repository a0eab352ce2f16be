"""technical rows owned: every article and status row carries its tenant

Reviewed by hand. Existing rows go to the `default` tenant; an article's slug and a status
component are unique per tenant (a tenant's own docs and status page). The default used to fill
existing rows is dropped: a new row must say whose it is.

This was the technical half of the engine's revision 0009_business_rows_owned before the business
tables left the engine's history (that revision is empty now). A database that already ran it has
the column: then there is nothing to do here, and nothing is changed twice.

Revision ID: technical_0002
Revises: technical_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "technical_0002"
down_revision = "technical_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "tenant" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("kb_articles")}:
        return  # applied as the engine's 0009_business_rows_owned
    for table in ("kb_articles", "service_status"):
        # Filled with the default tenant, which the column then stops defaulting to.
        tenant = sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False)
        op.add_column(table, tenant)
        op.alter_column(table, "tenant", server_default=None)
    op.drop_constraint("kb_articles_slug_key", "kb_articles", type_="unique")
    op.create_unique_constraint("uq_kb_articles_tenant_slug", "kb_articles", ["tenant", "slug"])
    op.drop_constraint("service_status_pkey", "service_status", type_="primary")
    op.create_primary_key("service_status_pkey", "service_status", ["tenant", "component"])


def downgrade() -> None:
    # Only possible while each slug and component is used by one tenant.
    op.drop_constraint("service_status_pkey", "service_status", type_="primary")
    op.create_primary_key("service_status_pkey", "service_status", ["component"])
    op.drop_constraint("uq_kb_articles_tenant_slug", "kb_articles", type_="unique")
    op.create_unique_constraint("kb_articles_slug_key", "kb_articles", ["slug"])
    for table in ("kb_articles", "service_status"):
        op.drop_column(table, "tenant")
