"""Writes LLM-call rows to the record, and adds their tokens and cost to their requests' totals.

A provider call has a row before it is made (its intent, `in_flight`, written with its budget
reservation by app/inference/budget.py); writing it here completes that row, by its id, and swaps
the reservation for what the call really cost, on the request and on its tenant's day. A row with
no id (a cache hit) is inserted. A row completes once: a late or repeated completion of a row no
longer in flight or in doubt changes nothing, so the checkpoint that completes a step's calls can
never count them twice.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from sqlalchemy import BindParameter, Connection, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

COLUMNS = (
    "request_id",
    "step",
    "purpose",
    "provider",
    "model",
    "tier",
    "key_id",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "limiter_wait_ms",
    "retries",
    "cache_hit",
    "outcome",
    "error",
)
# Beside COLUMNS, a row may carry: `call_id` (its intent row), and `charged_usd` (what it counts
# against the budgets: its cost, or its cost at the fallback price for an unpriced model).
UNFINISHED = ("in_flight", "in_doubt")

_ROW_TYPES = (
    "call_id bigint, request_id varchar, step varchar, purpose varchar, provider varchar, model varchar, "
    "tier varchar, key_id varchar, prompt_tokens integer, completion_tokens integer, cost_usd numeric, "
    "latency_ms float8, limiter_wait_ms float8, retries integer, cache_hit boolean, "
    "outcome varchar, error text, charged_usd numeric"
)
_INSERTED = ", ".join(COLUMNS)

# Shards of a tenant's day (tenant_spend): the day is their sum. A request's calls all go to the
# shard its id hashes to, so one tenant's concurrent requests spread over this many rows instead of
# queueing on one, and one checkpoint still locks one row per day. More shards: less queueing,
# and a daily budget may be overshot by up to one call's reservation per other shard (see
# app/inference/budget.py). Changing it is safe: a call records the shard it reserved on.
DAY_SHARDS = 8


def shard_of(request_id: str) -> str:
    """SQL for the day shard of the request whose id is the SQL expression `request_id`."""
    return f"mod(abs(hashtext({request_id})::bigint), {DAY_SHARDS})::smallint"


# One statement, for any number of rows: the rows travel as one JSON array. Requests are updated
# before their tenants' days (the second depends on the first's RETURNING), the order every
# reservation locks them in too. _CALLS completes or inserts the rows and adds them to their
# requests; _DAYS ends the statement with the tenants' days (`with_calls` writes one more thing
# in between). A completed call gives its day back what it reserved there, on the shard it
# reserved on (`spend_shard`; nothing if it reserved nothing there: no daily budget), and adds its
# cost to that shard, or to its request's when it reserved none.
_CALLS = f"""
WITH new_call AS (
    SELECT * FROM jsonb_to_recordset(:rows) AS x({_ROW_TYPES})
), completed AS (
    UPDATE llm_calls c
    SET key_id = coalesce(n.key_id, c.key_id), prompt_tokens = n.prompt_tokens,
        completion_tokens = n.completion_tokens, cost_usd = n.cost_usd, latency_ms = n.latency_ms,
        limiter_wait_ms = n.limiter_wait_ms, retries = n.retries, outcome = n.outcome, error = n.error
    FROM new_call n
    -- By primary key (`call_ids`: a list of as many parameters as there are ids, so the planner
    -- knows it is a few rows), never through the partial index of unfinished calls: completing a
    -- call leaves that index's entry for it behind until the next vacuum, and a bitmap scan of it
    -- (the planner's choice, expecting a few live rows) visits every call completed since. A CASE
    -- is not something the planner matches against the index's predicate.
    WHERE c.id IN :call_ids AND c.id = n.call_id
      AND CASE WHEN c.outcome IN ('in_flight', 'in_doubt') THEN true ELSE false END
    RETURNING c.request_id, c.prompt_tokens, c.completion_tokens, c.cost_usd, n.charged_usd,
              c.estimated_cost_usd AS released,
              CASE WHEN c.spend_shard IS NULL THEN 0 ELSE c.estimated_cost_usd END AS day_released,
              coalesce(c.spend_shard, {shard_of("c.request_id")}) AS shard,
              (c.created_at AT TIME ZONE 'UTC')::date AS day
), inserted AS (
    INSERT INTO llm_calls ({_INSERTED})
    SELECT {_INSERTED} FROM new_call WHERE call_id IS NULL
    RETURNING request_id, prompt_tokens, completion_tokens, cost_usd, 0::numeric AS charged_usd,
              0::numeric AS released, 0::numeric AS day_released, {shard_of("request_id")} AS shard,
              (created_at AT TIME ZONE 'UTC')::date AS day
), written AS (
    SELECT * FROM completed UNION ALL SELECT * FROM inserted
), per_request_day AS (
    -- A call of an unpriced model may carry no known cost (NULL): it adds nothing known to its
    -- request's cost, while the budgets count what it was charged (the fallback price).
    SELECT request_id, day, shard, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion,
           coalesce(sum(cost_usd), 0) AS cost, coalesce(sum(coalesce(charged_usd, cost_usd)), 0) AS charged,
           sum(released) AS released, sum(day_released) AS day_released
    FROM written WHERE request_id IS NOT NULL
    GROUP BY request_id, day, shard
    -- Calls that used no tokens and held nothing (cache hits) leave their request alone.
    HAVING sum(prompt_tokens + completion_tokens) > 0 OR sum(released) > 0
), totals AS (
    UPDATE requests r
    SET prompt_tokens = r.prompt_tokens + p.prompt, completion_tokens = r.completion_tokens + p.completion,
        cost_usd = r.cost_usd + p.cost, reserved_usd = greatest(r.reserved_usd - p.released, 0)
    FROM (SELECT request_id, sum(prompt) AS prompt, sum(completion) AS completion, sum(cost) AS cost,
                 sum(released) AS released
          FROM per_request_day GROUP BY request_id) p
    WHERE r.id = p.request_id
    RETURNING r.id, r.tenant
)
"""
_DAYS = """
-- `reserved_usd` carries what to give back; a shard that does not exist yet has nothing reserved
-- (every reservation creates its shard), so the value inserted there is 0. A call that changes
-- nothing on its day (a failure that reserved nothing there) leaves the shard unlocked.
INSERT INTO tenant_spend AS d (tenant, day, shard, spent_usd, reserved_usd)
SELECT t.tenant, q.day, q.shard, sum(q.charged), sum(q.day_released)
FROM per_request_day q JOIN totals t ON t.id = q.request_id
GROUP BY t.tenant, q.day, q.shard
HAVING sum(q.charged) <> 0 OR sum(q.day_released) <> 0
ON CONFLICT (tenant, day, shard) DO UPDATE
SET spent_usd = d.spent_usd + excluded.spent_usd,
    reserved_usd = greatest(d.reserved_usd - excluded.reserved_usd, 0)
"""


def compact(sql: str) -> str:
    """`sql` on one line, without its `--` comments: psycopg caches a query's parsing only up to
    4,096 characters (MAX_CACHED_STATEMENT_LENGTH), and the checkpoint statements built on these
    run for most steps of every request. For SQL whose string literals hold no `--` and no run of
    whitespace, as here."""
    return " ".join(re.sub(r"--[^\n]*", "", sql).split())


def _calls_statement(sql: str, *more: BindParameter[Any]) -> TextClause:
    return text(compact(sql)).bindparams(
        bindparam("rows", type_=JSONB), bindparam("call_ids", expanding=True), *more
    )


_WRITE = _calls_statement(_CALLS + _DAYS)


def with_calls(statement: str, **types: Any) -> TextClause:
    """One statement that writes LLM-call rows (its parameters from `calls_params`) and also
    runs `statement` (an INSERT, UPDATE or DELETE in SQL, with its own named parameters; `types`:
    their SQLAlchemy types where the driver needs them): a checkpoint and the calls its step paid
    for commit together in one round trip. `statement` sees the snapshot before the calls' writes."""
    sql = _CALLS.rstrip() + f", also AS (\n{statement}\n)" + _DAYS
    return _calls_statement(sql, *(bindparam(k, type_=t) for k, t in types.items()))


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    # Decimal is not JSON; its string keeps every digit, and PostgreSQL reads it back as numeric.
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in row.items()}


def calls_params(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The parameters `_WRITE` and a `with_calls` statement take for `rows`."""
    return {
        "rows": [_jsonable(row) for row in rows],
        "call_ids": [row["call_id"] for row in rows if row.get("call_id") is not None],
    }


def write_calls(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Complete (rows with a `call_id`) or insert LLM-call rows (dicts with the keys in COLUMNS)
    and add them to their requests' totals and their tenants' days."""
    if not rows:
        return
    conn.execute(_WRITE, calls_params(rows))
