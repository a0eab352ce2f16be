"""business rows owned: the bundled specialists' rows carry their tenant, and a customer's their customer

Reviewed by hand. Touches only the bundled specialists' business tables (accounts, invoices,
refunds, kb_articles, service_status), none of the engine's, so it can move to the specialists'
own migrations as one piece. Existing rows go to the `default` tenant; an account's customer is
its e-mail (the id the demo's apps authenticate their users by), and its invoices and refunds take
the account's. Uniqueness becomes per tenant (an e-mail, an article slug, a status component).
The defaults used to fill existing rows are dropped: a new row must say whose it is.

Revision ID: 0009_business_rows_owned
Revises: 0008_conversations_per_tenant
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_business_rows_owned"
down_revision = "0008_conversations_per_tenant"
branch_labels = None
depends_on = None

_TENANT = sa.String(length=64)
_CUSTOMER = sa.String(length=200)


def _add_tenant(table: str) -> None:
    op.add_column(table, sa.Column("tenant", _TENANT, server_default="default", nullable=False))
    op.alter_column(table, "tenant", server_default=None)


def upgrade() -> None:
    for table in ("accounts", "invoices", "refunds", "kb_articles", "service_status"):
        _add_tenant(table)
    for table in ("accounts", "invoices", "refunds"):
        op.add_column(table, sa.Column("customer", _CUSTOMER, nullable=True))
    op.execute("UPDATE accounts SET customer = email")
    op.execute("UPDATE invoices SET customer = a.customer, tenant = a.tenant FROM accounts a "
               "WHERE a.id = invoices.account_id")
    op.execute("UPDATE refunds SET customer = i.customer, tenant = i.tenant FROM invoices i "
               "WHERE i.id = refunds.invoice_id")
    for table in ("accounts", "invoices", "refunds"):
        op.alter_column(table, "customer", nullable=False)

    op.drop_constraint("accounts_email_key", "accounts", type_="unique")
    op.create_unique_constraint("uq_accounts_tenant_email", "accounts", ["tenant", "email"])
    op.create_unique_constraint("uq_accounts_tenant_customer", "accounts", ["tenant", "customer"])
    op.create_index("ix_invoices_owner", "invoices", ["tenant", "customer", "issued_at"], unique=False)
    op.drop_constraint("kb_articles_slug_key", "kb_articles", type_="unique")
    op.create_unique_constraint("uq_kb_articles_tenant_slug", "kb_articles", ["tenant", "slug"])
    op.drop_constraint("service_status_pkey", "service_status", type_="primary")
    op.create_primary_key("service_status_pkey", "service_status", ["tenant", "component"])


def downgrade() -> None:
    # Only possible while each e-mail, slug and component is used by one tenant.
    op.drop_constraint("service_status_pkey", "service_status", type_="primary")
    op.create_primary_key("service_status_pkey", "service_status", ["component"])
    op.drop_constraint("uq_kb_articles_tenant_slug", "kb_articles", type_="unique")
    op.create_unique_constraint("kb_articles_slug_key", "kb_articles", ["slug"])
    op.drop_index("ix_invoices_owner", table_name="invoices")
    op.drop_constraint("uq_accounts_tenant_customer", "accounts", type_="unique")
    op.drop_constraint("uq_accounts_tenant_email", "accounts", type_="unique")
    op.create_unique_constraint("accounts_email_key", "accounts", ["email"])
    for table in ("accounts", "invoices", "refunds"):
        op.drop_column(table, "customer")
    for table in ("accounts", "invoices", "refunds", "kb_articles", "service_status"):
        op.drop_column(table, "tenant")
