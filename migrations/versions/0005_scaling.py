"""scaling: per-queue pool targets, autoscaler decisions, indexes for drain rates

Reviewed by hand. `pool_targets` holds the concurrency set for a queue (by `switchboard scale` or
the autoscaler) and the heartbeat of the local supervisor applying it; `scaling_decisions` records
every autoscaler decision. The two indexes on requests let the backlog estimate (drain rate per
queue) count recent completions and routings without scanning the table.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_targets",
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("processes", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("supervisor", sa.String(length=200), nullable=True),
        sa.Column("supervisor_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("queue"),
    )
    op.create_table(
        "scaling_decisions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("current", sa.Integer(), nullable=False),
        sa.Column("desired", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("limit_cap", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.CheckConstraint("action IN ('up','down','hold')", name="ck_scaling_decisions_action"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scaling_decisions_queue_at", "scaling_decisions", ["queue", "at"], unique=False)
    op.create_index("ix_requests_finished_at", "requests", ["finished_at"], unique=False)
    op.create_index("ix_requests_routed_at", "requests", ["routed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_requests_routed_at", table_name="requests")
    op.drop_index("ix_requests_finished_at", table_name="requests")
    op.drop_index("ix_scaling_decisions_queue_at", table_name="scaling_decisions")
    op.drop_table("scaling_decisions")
    op.drop_table("pool_targets")
