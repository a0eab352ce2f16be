"""Writes LLM-call rows to the record, and adds their tokens and cost to their requests' totals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, column, func, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB

from app.db import LlmCall, Request

_CALLS = LlmCall.__table__
_REQUESTS = Request.__table__
COLUMNS = (
    "request_id", "step", "purpose", "provider", "model", "tier", "key_id", "prompt_tokens", "completion_tokens",
    "cost_usd", "latency_ms", "limiter_wait_ms", "retries", "cache_hit", "outcome", "error",
)

# One statement, built once, for any number of rows: the rows travel as one JSON array, the
# INSERT returns what it wrote, and the UPDATE adds it up per request. The rows and the totals
# cannot disagree, and a step's calls cost one round trip inside its checkpoint transaction.
_rows = (
    func.jsonb_to_recordset(bindparam("rows", type_=JSONB))
    .table_valued(*(column(name, _CALLS.c[name].type) for name in COLUMNS))
    .render_derived(name="new_call", with_types=True)
)
_inserted = (
    insert(_CALLS)
    .from_select(list(COLUMNS), select(*(_rows.c[name] for name in COLUMNS)))
    .returning(_CALLS.c.request_id, _CALLS.c.prompt_tokens, _CALLS.c.completion_tokens, _CALLS.c.cost_usd)
    .cte("inserted")
)
_per_request = (
    select(
        _inserted.c.request_id,
        func.sum(_inserted.c.prompt_tokens).label("prompt"),
        func.sum(_inserted.c.completion_tokens).label("completion"),
        # Unpriced calls (cost NULL) add nothing known to the request's total.
        func.coalesce(func.sum(_inserted.c.cost_usd), 0).label("cost"),
    )
    .where(_inserted.c.request_id.is_not(None))
    .group_by(_inserted.c.request_id)
    # Calls that used no tokens (cache hits, failures) leave the request's row alone.
    .having(func.sum(_inserted.c.prompt_tokens + _inserted.c.completion_tokens) > 0)
    .subquery("per_request")
)
_WRITE = (
    update(_REQUESTS)
    .where(_REQUESTS.c.id == _per_request.c.request_id)
    .values(
        prompt_tokens=_REQUESTS.c.prompt_tokens + _per_request.c.prompt,
        completion_tokens=_REQUESTS.c.completion_tokens + _per_request.c.completion,
        cost_usd=_REQUESTS.c.cost_usd + _per_request.c.cost,
    )
)


def write_calls(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert LLM-call rows (dicts with the keys in COLUMNS) and add them to their requests' totals."""
    if not rows:
        return
    # Decimal is not JSON; its string keeps every digit, and PostgreSQL reads it back as numeric.
    # None (an unpriced model) stays JSON null: NULL in the record, not $0.
    conn.execute(_WRITE, {"rows": [
        {**row, "cost_usd": None if row["cost_usd"] is None else str(row["cost_usd"])} for row in rows
    ]})
