"""inference layer state: shared rate buckets, provider keys, circuit breakers, response cache

Reviewed by hand. These tables are shared by every worker process on every machine: the limiter,
the breaker and the cache work across the fleet because their state lives here. llm_calls gains the
accounting columns (provider, limiter wait, retries, cache hit).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:48:49.122335
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('breaker_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('target', sa.String(length=300), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=False),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('circuit_breakers',
    sa.Column('target', sa.String(length=300), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='closed', nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('window_started', sa.Double(), server_default='0', nullable=False),
    sa.Column('window_calls', sa.Integer(), server_default='0', nullable=False),
    sa.Column('window_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('opened_at', sa.Double(), server_default='0', nullable=False),
    sa.Column('probe_started', sa.Double(), server_default='0', nullable=False),
    sa.CheckConstraint("state IN ('closed','open','half_open')", name='ck_circuit_breakers_state'),
    sa.PrimaryKeyConstraint('target')
    )
    op.create_table('llm_cache',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.Integer(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index('ix_llm_cache_expires_at', 'llm_cache', ['expires_at'], unique=False)
    op.create_table('provider_keys',
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('provider', sa.String(length=200), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('key_id')
    )
    op.create_table('rate_buckets',
    sa.Column('bucket', sa.String(length=300), nullable=False),
    sa.Column('tat', sa.Double(), nullable=False),
    sa.Column('paused_until', sa.Double(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('bucket')
    )
    op.add_column('llm_calls', sa.Column('provider', sa.String(length=200), nullable=True))
    op.add_column('llm_calls', sa.Column('limiter_wait_ms', sa.Double(), server_default='0', nullable=False))
    op.add_column('llm_calls', sa.Column('retries', sa.Integer(), server_default='0', nullable=False))
    op.add_column('llm_calls', sa.Column('cache_hit', sa.Boolean(), server_default='false', nullable=False))
    # The breaker measures a target's failure rate over a recent window from the calls themselves.
    op.create_index('ix_llm_calls_target_created', 'llm_calls', ['provider', 'model', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_llm_calls_target_created', table_name='llm_calls')
    op.drop_column('llm_calls', 'cache_hit')
    op.drop_column('llm_calls', 'retries')
    op.drop_column('llm_calls', 'limiter_wait_ms')
    op.drop_column('llm_calls', 'provider')
    op.drop_table('rate_buckets')
    op.drop_table('provider_keys')
    op.drop_index('ix_llm_cache_expires_at', table_name='llm_cache')
    op.drop_table('llm_cache')
    op.drop_table('circuit_breakers')
    op.drop_table('breaker_events')
