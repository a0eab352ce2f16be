"""billing tables: accounts, invoices, refunds

Reviewed by hand. The billing specialist's own history (version table alembic_version_billing).
Until Switchboard 0.1.0 the engine's first revision created these tables in every database; a
database from then already has them, with data. This revision adopts them as they are instead of
failing on CREATE TABLE or dropping anything: each table is created only where it is missing, in the
shape that revision gave it, so every later billing revision starts from one known schema.

Revision ID: billing_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "billing_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "accounts" not in existing:
        op.create_table(
            "accounts",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("email", sa.String(length=200), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("plan", sa.String(length=32), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column(
                "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("email"),
        )
    if "invoices" not in existing:
        op.create_table(
            "invoices",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("account_id", sa.Integer(), nullable=False),
            sa.Column("amount_usd", sa.Numeric(precision=12, scale=2), nullable=False),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("period", sa.String(length=16), nullable=False),
            sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
            sa.PrimaryKeyConstraint("id"),
        )
    if "refunds" not in existing:
        op.create_table(
            "refunds",
            sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
            sa.Column("invoice_id", sa.String(length=32), nullable=False),
            # The request that paid it, in the engine's record: the engine's history runs first.
            sa.Column("request_id", sa.String(length=36), nullable=False),
            sa.Column("amount_usd", sa.Numeric(precision=12, scale=2), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column(
                "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
            ),
            sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"]),
            sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("request_id", "invoice_id", name="uq_refunds_request_invoice"),
        )


def downgrade() -> None:
    op.drop_table("refunds")
    op.drop_table("invoices")
    op.drop_table("accounts")
