"""billing rows owned: every account, invoice and refund carries its tenant and its customer

Reviewed by hand. Existing rows go to the `default` tenant; an account's customer is its e-mail
(the id the demo's apps authenticate their users by), and its invoices and refunds take the
account's. An e-mail is unique per tenant, and so is a customer's account. The defaults used to
fill existing rows are dropped: a new row must say whose it is.

This was the billing half of the engine's revision 0009_business_rows_owned before the business
tables left the engine's history (that revision is empty now). A database that already ran it has
these columns: then there is nothing to do here, and nothing is changed twice.

Revision ID: billing_0002
Revises: billing_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "billing_0002"
down_revision = "billing_0001"
branch_labels = None
depends_on = None

TABLES = ("accounts", "invoices", "refunds")


def upgrade() -> None:
    if "tenant" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("accounts")}:
        return  # applied as the engine's 0009_business_rows_owned
    for table in TABLES:
        # Filled with the default tenant, which the column then stops defaulting to.
        tenant = sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False)
        op.add_column(table, tenant)
        op.alter_column(table, "tenant", server_default=None)
        op.add_column(table, sa.Column("customer", sa.String(length=200), nullable=True))
    op.execute("UPDATE accounts SET customer = email")
    op.execute(
        "UPDATE invoices SET customer = a.customer, tenant = a.tenant FROM accounts a "
        "WHERE a.id = invoices.account_id"
    )
    op.execute(
        "UPDATE refunds SET customer = i.customer, tenant = i.tenant FROM invoices i "
        "WHERE i.id = refunds.invoice_id"
    )
    for table in TABLES:
        op.alter_column(table, "customer", nullable=False)
    op.drop_constraint("accounts_email_key", "accounts", type_="unique")
    op.create_unique_constraint("uq_accounts_tenant_email", "accounts", ["tenant", "email"])
    op.create_unique_constraint("uq_accounts_tenant_customer", "accounts", ["tenant", "customer"])
    op.create_index("ix_invoices_owner", "invoices", ["tenant", "customer", "issued_at"], unique=False)


def downgrade() -> None:
    # Only possible while each e-mail is used by one tenant.
    op.drop_index("ix_invoices_owner", table_name="invoices")
    op.drop_constraint("uq_accounts_tenant_customer", "accounts", type_="unique")
    op.drop_constraint("uq_accounts_tenant_email", "accounts", type_="unique")
    op.create_unique_constraint("accounts_email_key", "accounts", ["email"])
    for table in TABLES:
        op.drop_column(table, "customer")
        op.drop_column(table, "tenant")
