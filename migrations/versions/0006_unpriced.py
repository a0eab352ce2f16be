"""unpriced calls: llm_calls.cost_usd may be NULL

Reviewed by hand. A successful call of a model with no price in SWITCHBOARD_PRICES is recorded
with cost_usd NULL (not known), never $0: SUM() skips it rather than counting it as free, and the
report lists such calls as unpriced. Requests' totals keep adding only the priced calls.

Revision ID: 0006_unpriced
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_unpriced"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("llm_calls", "cost_usd", existing_type=sa.Numeric(14, 6), nullable=True,
                    existing_server_default=sa.text("0"))


def downgrade() -> None:
    # Unknown costs cannot be told apart from free calls once this column forbids NULL again.
    op.execute("UPDATE llm_calls SET cost_usd = 0 WHERE cost_usd IS NULL")
    op.alter_column("llm_calls", "cost_usd", existing_type=sa.Numeric(14, 6), nullable=False,
                    existing_server_default=sa.text("0"))
