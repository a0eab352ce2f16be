"""technical tables: the knowledge base and the status page

Reviewed by hand. The first revision of the technical specialist's own history (version table
alembic_version_technical). Databases from before Switchboard 0.1.0's split already have these
tables, made by the engine's revision 0001, with rows: as billing_0001 does for billing's, it
creates each only where it is missing, in that shape, and adopts the ones it finds untouched.

Revision ID: technical_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "technical_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "kb_articles" not in existing:
        op.create_table(
            "kb_articles",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("slug", sa.String(length=100), nullable=False),
            sa.Column("title", sa.String(length=200), nullable=False),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column(
                "search",
                postgresql.TSVECTOR(),
                sa.Computed("to_tsvector('english', title || ' ' || body)", persisted=True),
                nullable=False,
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("slug"),
        )
        op.create_index(
            "ix_kb_articles_search", "kb_articles", ["search"], unique=False, postgresql_using="gin"
        )
    if "service_status" not in existing:
        op.create_table(
            "service_status",
            sa.Column("component", sa.String(length=64), nullable=False),
            sa.Column("status", sa.String(length=32), nullable=False),
            sa.Column("message", sa.Text(), nullable=False),
            sa.Column(
                "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
            ),
            sa.PrimaryKeyConstraint("component"),
        )


def downgrade() -> None:
    op.drop_table("service_status")
    op.drop_index("ix_kb_articles_search", table_name="kb_articles", postgresql_using="gin")
    op.drop_table("kb_articles")
