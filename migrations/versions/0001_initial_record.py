"""initial record: requests, their events, steps and LLM calls, conversations

Reviewed by hand. request_events is append-only, enforced by a trigger, so the audit trail cannot be
rewritten by application code.

Until Switchboard 0.1.0 this revision also created the bundled specialists' business tables
(accounts, invoices, refunds, kb_articles, service_status). They belong to those specialists now,
each in its own history (specialists/billing/migrations, specialists/technical/migrations), whose
first revision adopts the tables a database created before then already has.

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 09:32:36.951339
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conversations',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('specialist', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('requests',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('priority', sa.String(length=8), server_default='normal', nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('conversation_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='accepted', nullable=False),
    sa.Column('specialist', sa.String(length=64), nullable=True),
    sa.Column('route_confidence', sa.Double(), nullable=True),
    sa.Column('route_method', sa.String(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), server_default='0', nullable=False),
    sa.Column('completion_tokens', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cost_usd', sa.Numeric(precision=14, scale=6), server_default='0', nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('routed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dead_lettered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("priority IN ('high','normal','low')", name='ck_requests_priority'),
    sa.CheckConstraint("status IN ('accepted','routed','running','succeeded','failed','dead_lettered')", name='ck_requests_status'),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant', 'idempotency_key', name='uq_requests_tenant_idempotency_key')
    )
    op.create_index('ix_requests_conversation', 'requests', ['conversation_id'], unique=False)
    op.create_index('ix_requests_status_accepted_at', 'requests', ['status', 'accepted_at'], unique=False)
    op.create_table('deliveries',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_table('llm_calls',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=True),
    sa.Column('step', sa.String(length=64), nullable=True),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('tier', sa.String(length=32), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), server_default='0', nullable=False),
    sa.Column('completion_tokens', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cost_usd', sa.Numeric(precision=14, scale=6), server_default='0', nullable=False),
    sa.Column('latency_ms', sa.Double(), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_llm_calls_request', 'llm_calls', ['request_id'], unique=False)
    op.create_table('request_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_request_events_request', 'request_events', ['request_id', 'id'], unique=False)
    op.create_table('step_runs',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('step', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('output', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'step', name='uq_step_runs_request_step')
    )
    op.create_table('turns',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_turns_conversation', 'turns', ['conversation_id', 'id'], unique=False)
    # The reconciler looks for accepted requests that never reached the broker.
    op.create_index(
        'ix_requests_unpublished', 'requests', ['accepted_at'], unique=False,
        postgresql_where=sa.text('published_at IS NULL'),
    )
    op.execute(
        """
        CREATE FUNCTION request_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'request_events is append-only';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER request_events_append_only BEFORE UPDATE OR DELETE ON request_events "
        "FOR EACH ROW EXECUTE FUNCTION request_events_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS request_events_append_only ON request_events")
    op.execute("DROP FUNCTION IF EXISTS request_events_append_only()")
    op.drop_index('ix_requests_unpublished', table_name='requests')
    op.drop_index('ix_turns_conversation', table_name='turns')
    op.drop_table('turns')
    op.drop_table('step_runs')
    op.drop_index('ix_request_events_request', table_name='request_events')
    op.drop_table('request_events')
    op.drop_index('ix_llm_calls_request', table_name='llm_calls')
    op.drop_table('llm_calls')
    op.drop_table('deliveries')
    op.drop_index('ix_requests_status_accepted_at', table_name='requests')
    op.drop_index('ix_requests_conversation', table_name='requests')
    op.drop_table('requests')
    op.drop_table('conversations')
