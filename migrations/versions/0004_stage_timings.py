"""stage timings: when the router took a request, and database time per request

Reviewed by hand. Both columns are written by statements that already run for every request (the
router's routed UPDATE, the specialist's final UPDATE), so they add no transaction to the hot path.
Every other stage is derived from timestamps, step_runs and llm_calls the record already keeps.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('requests', sa.Column('route_started_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('requests', sa.Column('db_ms', sa.Double(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('requests', 'db_ms')
    op.drop_column('requests', 'route_started_at')
