"""limit levels: learned limits on rate buckets, and the events that lowered or raised them

Reviewed by hand. A bucket row now also carries the limit the fleet configured for it (written by
every reservation, so `switchboard limits` shows what the workers use) and the limit the provider
reported in its headers (`learned_limit`); reservations adopt the lower of the two. Every change
of a learned limit is one `limit_events` row. Bucket names are readable and never hold a key:
`key:<host>/<key-id>/rpm`, `model:<host>/<key-id>/<group>/tpm`, `provider:<host>/rpm`.

Revision ID: 0012_limit_levels
Revises: 0011_approvals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_limit_levels"
down_revision = "0011_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rate_buckets", sa.Column("configured_limit", sa.Double(), nullable=True))
    op.add_column("rate_buckets", sa.Column("learned_limit", sa.Double(), nullable=True))
    op.add_column("rate_buckets", sa.Column("learned_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "limit_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("bucket", sa.String(length=300), nullable=False),
        sa.Column("previous_limit", sa.Double(), nullable=True),
        sa.Column("learned_limit", sa.Double(), nullable=False),
        sa.Column("configured_limit", sa.Double(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_limit_events_bucket_at", "limit_events", ["bucket", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_limit_events_bucket_at", table_name="limit_events")
    op.drop_table("limit_events")
    op.drop_column("rate_buckets", "learned_at")
    op.drop_column("rate_buckets", "learned_limit")
    op.drop_column("rate_buckets", "configured_limit")
