"""cost truth: intent rows for LLM calls, reservations against budgets, spend per tenant and day

Reviewed by hand. A call's row is written before the provider is called (outcome `in_flight`, its
estimated tokens and estimated maximum cost) and completed after; a row left `in_flight` by a dead
process is marked `in_doubt` by the reconciler, found through a partial index. Requests carry what
their unfinished calls reserve; tenants may override the request ceiling and set a daily budget
(NULL: the settings' defaults); `tenant_spend` holds each tenant's spent and reserved dollars per
UTC day, the row every reservation of that tenant takes its share from.

Revision ID: 0010_cost
Revises: 0009_business_rows_owned
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_cost"
down_revision = "0009_business_rows_owned"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(14, 6)


def upgrade() -> None:
    op.add_column("llm_calls", sa.Column("estimated_tokens", sa.Integer(), server_default="0",
                                         nullable=False))
    op.add_column("llm_calls", sa.Column("estimated_cost_usd", MONEY, server_default="0", nullable=False))
    op.create_index("ix_llm_calls_in_flight", "llm_calls", ["created_at"],
                    postgresql_where=sa.text("outcome IN ('in_flight', 'in_doubt')"))
    op.add_column("requests", sa.Column("reserved_usd", MONEY, server_default="0", nullable=False))
    op.add_column("tenants", sa.Column("daily_budget_usd", sa.Numeric(14, 4), nullable=True))
    op.add_column("tenants", sa.Column("request_budget_usd", sa.Numeric(14, 4), nullable=True))
    op.create_check_constraint("ck_tenants_budgets", "tenants",
                               "coalesce(daily_budget_usd, 0) >= 0 AND coalesce(request_budget_usd, 0) >= 0")
    op.create_table(
        "tenant_spend",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("spent_usd", MONEY, server_default="0", nullable=False),
        sa.Column("reserved_usd", MONEY, server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("tenant", "day"),
    )


def downgrade() -> None:
    op.drop_table("tenant_spend")
    op.drop_constraint("ck_tenants_budgets", "tenants", type_="check")
    op.drop_column("tenants", "request_budget_usd")
    op.drop_column("tenants", "daily_budget_usd")
    op.drop_column("requests", "reserved_usd")
    op.drop_index("ix_llm_calls_in_flight", table_name="llm_calls")
    op.drop_column("llm_calls", "estimated_cost_usd")
    op.drop_column("llm_calls", "estimated_tokens")
