"""spend shards: a tenant's day is split over rows, so its concurrent requests stop queueing on one

Reviewed by hand. `tenant_spend` gains `shard` (part of its key): a request's reservations and
completed calls go to the shard its id hashes to (app/inference/budget.py), and readers sum a
day's shards. `llm_calls.spend_shard` says which shard holds an unfinished call's reservation
(NULL: none, its tenant had no daily budget), so its completion gives back exactly what was
taken, where it was taken. `switchboard_reserve_day` takes a reservation on one shard and checks
the daily budget against all of them, read after that shard is locked (see the function).

Rows from before: each (tenant, day) becomes shard 0, and every unfinished call reserved there.

Revision ID: 0014_spend_shards
Revises: 0013_trace_context
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_spend_shards"
down_revision = "0013_trace_context"
branch_labels = None
depends_on = None

# Plain SQL inside is run one statement at a time, and in READ COMMITTED each of them takes a new
# snapshot (a VOLATILE function's do): the sum below is read after the caller's shard is locked,
# so it counts every reservation committed before, and misses only those being made on the other
# shards at that moment (at most one per shard, each holding that shard's lock).
RESERVE_DAY = """
CREATE FUNCTION switchboard_reserve_day(
    p_tenant varchar, p_day date, p_shard smallint, p_amount numeric, p_daily numeric,
    OUT held boolean, OUT used numeric
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO tenant_spend AS d (tenant, day, shard, reserved_usd)
    VALUES (p_tenant, p_day, p_shard, p_amount)
    ON CONFLICT (tenant, day, shard) DO UPDATE SET reserved_usd = d.reserved_usd + excluded.reserved_usd;
    SELECT sum(spent_usd + reserved_usd) INTO used
    FROM tenant_spend WHERE tenant = p_tenant AND day = p_day;
    held := used <= p_daily;
    IF NOT held THEN
        UPDATE tenant_spend SET reserved_usd = reserved_usd - p_amount
        WHERE tenant = p_tenant AND day = p_day AND shard = p_shard;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.add_column("tenant_spend", sa.Column("shard", sa.SmallInteger(), server_default="0", nullable=False))
    op.drop_constraint("tenant_spend_pkey", "tenant_spend", type_="primary")
    op.create_primary_key("tenant_spend_pkey", "tenant_spend", ["tenant", "day", "shard"])
    op.add_column("llm_calls", sa.Column("spend_shard", sa.SmallInteger(), nullable=True))
    op.execute("UPDATE llm_calls SET spend_shard = 0 WHERE outcome IN ('in_flight', 'in_doubt')")
    op.execute(RESERVE_DAY)


def downgrade() -> None:
    op.execute("DROP FUNCTION switchboard_reserve_day")
    # Each day's shards back into one row. Unfinished calls of tenants without a daily budget
    # reserved nothing there; the earlier code gives back what they hold anyway, never below 0.
    op.execute("""
        WITH merged AS (
            DELETE FROM tenant_spend WHERE shard <> 0 RETURNING tenant, day, spent_usd, reserved_usd
        )
        INSERT INTO tenant_spend AS d (tenant, day, shard, spent_usd, reserved_usd)
        SELECT tenant, day, 0, sum(spent_usd), sum(reserved_usd) FROM merged GROUP BY tenant, day
        ON CONFLICT (tenant, day, shard) DO UPDATE
        SET spent_usd = d.spent_usd + excluded.spent_usd, reserved_usd = d.reserved_usd + excluded.reserved_usd
    """)
    op.drop_column("llm_calls", "spend_shard")
    op.drop_constraint("tenant_spend_pkey", "tenant_spend", type_="primary")
    op.drop_column("tenant_spend", "shard")
    op.create_primary_key("tenant_spend_pkey", "tenant_spend", ["tenant", "day"])
