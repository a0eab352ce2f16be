"""trace context: a request keeps the W3C traceparent of the span that accepted it

Reviewed by hand. One nullable column on the engine's `requests` table: the reconciler's
re-publish and a replayed dead letter continue the request's original trace from it, and
`status --json` shows its trace id. Requests accepted before, or without tracing, keep NULL.

Revision ID: 0013_trace_context
Revises: 0012_limit_levels
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_trace_context"
down_revision = "0012_limit_levels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex: 55 characters (W3C Trace Context, version 00).
    op.add_column("requests", sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "traceparent")
