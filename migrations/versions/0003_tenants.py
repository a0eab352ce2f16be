"""tenants, API keys and delivery callbacks of the HTTP ingress

Reviewed by hand. Keys are stored only as SHA-256 of a 256-bit random token; tenants keep a salt,
not a signing secret. requests gains an index on (tenant, status) for per-tenant in-flight counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:07:50.005011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tenants',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('rpm_limit', sa.Integer(), nullable=False),
    sa.Column('max_concurrent', sa.Integer(), nullable=False),
    sa.Column('signing_salt', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=8), server_default='submit', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("scope IN ('submit','read')", name='ck_api_keys_scope'),
    sa.ForeignKeyConstraint(['tenant'], ['tenants.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_api_keys_tenant', 'api_keys', ['tenant'], unique=False)
    op.create_table('callbacks',
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending','sending','delivered','failed')", name='ck_callbacks_status'),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ),
    sa.PrimaryKeyConstraint('request_id')
    )
    op.create_table('callback_attempts',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Double(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['callbacks.request_id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_callback_attempts_request', 'callback_attempts', ['request_id', 'id'], unique=False)
    op.create_index('ix_requests_tenant_status', 'requests', ['tenant', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_requests_tenant_status', table_name='requests')
    op.drop_index('ix_callback_attempts_request', table_name='callback_attempts')
    op.drop_table('callback_attempts')
    op.drop_table('callbacks')
    op.drop_index('ix_api_keys_tenant', table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_table('tenants')
