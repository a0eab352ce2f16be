"""approvals and the human queue: two statuses, approvals, handoffs, per-tenant settings

Reviewed by hand. `requests.status` gains `awaiting_approval` (a tool call waits for a person;
the request is parked at its step) and `needs_human` (handed to the human queue), and widens to
24 characters for them. `approvals` records each call that needed a decision and who gave it;
`handoffs` each request given to a person and the reply; `tenant_settings` holds per-tenant
values that specialists define (the engine knows none of their names).

Revision ID: 0011_approvals
Revises: 0010_cost
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_approvals"
down_revision = "0010_cost"
branch_labels = None
depends_on = None

_OLD_STATUSES = "status IN ('accepted','routed','running','succeeded','failed','dead_lettered')"
_NEW_STATUSES = (
    "status IN ('accepted','routed','running','succeeded','failed','dead_lettered',"
    "'awaiting_approval','needs_human')"
)


def upgrade() -> None:
    op.drop_constraint("ck_requests_status", "requests", type_="check")
    op.alter_column(
        "requests",
        "status",
        type_=sa.String(length=24),
        existing_type=sa.String(length=16),
        existing_nullable=False,
        existing_server_default="accepted",
    )
    op.create_check_constraint("ck_requests_status", "requests", _NEW_STATUSES)
    op.create_table(
        "approvals",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("call_key", sa.String(length=200), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("arguments", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column(
            "requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("decision IN ('approved','rejected','escalated')", name="ck_approvals_decision"),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "step", "call_key", name="uq_approvals_request_step_call"),
    )
    op.create_index(
        "ix_approvals_pending_deadline",
        "approvals",
        ["deadline"],
        unique=False,
        postgresql_where=sa.text("decision IS NULL"),
    )
    op.create_index("ix_approvals_request", "approvals", ["request_id"], unique=False)
    op.create_table(
        "handoffs",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("replied_by", sa.String(length=200), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "source IN ('workflow','tool','approval_deadline','failure')", name="ck_handoffs_source"
        ),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"]),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_table(
        "tenant_settings",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name"),
    )


def downgrade() -> None:
    op.drop_table("tenant_settings")
    op.drop_table("handoffs")
    op.drop_index("ix_approvals_request", table_name="approvals")
    op.drop_index(
        "ix_approvals_pending_deadline", table_name="approvals", postgresql_where=sa.text("decision IS NULL")
    )
    op.drop_table("approvals")
    # Requests parked or handed over cannot be described by the old schema: they are ended.
    op.execute(
        "UPDATE requests SET status = 'dead_lettered', error = 'downgraded while waiting on a person' "
        "WHERE status IN ('awaiting_approval','needs_human')"
    )
    op.drop_constraint("ck_requests_status", "requests", type_="check")
    op.alter_column(
        "requests",
        "status",
        type_=sa.String(length=16),
        existing_type=sa.String(length=24),
        existing_nullable=False,
        existing_server_default="accepted",
    )
    op.create_check_constraint("ck_requests_status", "requests", _OLD_STATUSES)
