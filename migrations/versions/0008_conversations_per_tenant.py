"""conversations per tenant: a conversation id names a conversation within its tenant only

Reviewed by hand. Conversation ids are chosen by the calling app, so two tenants may pick the same
one; the key becomes (tenant, id), and requests and turns reference a conversation by both. Tenant
B using tenant A's id starts a conversation of its own and never sees or extends A's history.
`conversations.customer` is the customer of its first request: another customer's request cannot
continue it. Existing turns take their conversation's tenant.

Revision ID: 0008_conversations_per_tenant
Revises: 0007_request_customer
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_conversations_per_tenant"
down_revision = "0007_request_customer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("customer", sa.String(length=200), nullable=True))
    op.add_column("turns", sa.Column("tenant", sa.String(length=64), nullable=True))
    op.execute("UPDATE turns SET tenant = c.tenant FROM conversations c WHERE c.id = turns.conversation_id")
    op.alter_column("turns", "tenant", nullable=False)
    op.drop_constraint("requests_conversation_id_fkey", "requests", type_="foreignkey")
    op.drop_constraint("turns_conversation_id_fkey", "turns", type_="foreignkey")
    op.drop_constraint("conversations_pkey", "conversations", type_="primary")
    op.create_primary_key("conversations_pkey", "conversations", ["tenant", "id"])
    op.create_foreign_key("fk_requests_conversation", "requests", "conversations",
                          ["tenant", "conversation_id"], ["tenant", "id"])
    op.create_foreign_key("fk_turns_conversation", "turns", "conversations",
                          ["tenant", "conversation_id"], ["tenant", "id"])
    op.drop_index("ix_turns_conversation", table_name="turns")
    op.create_index("ix_turns_conversation", "turns", ["tenant", "conversation_id", "id"], unique=False)


def downgrade() -> None:
    # Only possible while no two tenants share a conversation id.
    op.drop_index("ix_turns_conversation", table_name="turns")
    op.create_index("ix_turns_conversation", "turns", ["conversation_id", "id"], unique=False)
    op.drop_constraint("fk_turns_conversation", "turns", type_="foreignkey")
    op.drop_constraint("fk_requests_conversation", "requests", type_="foreignkey")
    op.drop_constraint("conversations_pkey", "conversations", type_="primary")
    op.create_primary_key("conversations_pkey", "conversations", ["id"])
    op.create_foreign_key("turns_conversation_id_fkey", "turns", "conversations", ["conversation_id"], ["id"])
    op.create_foreign_key("requests_conversation_id_fkey", "requests", "conversations",
                          ["conversation_id"], ["id"])
    op.drop_column("turns", "tenant")
    op.drop_column("conversations", "customer")
