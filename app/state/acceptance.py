"""A request's acceptance: its row, its `accepted` event and its callback row, written together.

The first record of every request, written by `client.accept` before anything is published.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

# A request, its `accepted` event and (with a callback URL) its callback row: one statement, so
# it commits by itself, all or nothing. Nothing is returned when the idempotency key was used.
# The other columns take their server defaults (status `accepted`, zero counts).
_ACCEPT = text("""
WITH accepted AS (
    INSERT INTO requests (id, tenant, customer, text, metadata, priority, idempotency_key,
                          conversation_id, traceparent)
    VALUES (:rid, :tenant, :customer, :text, :metadata, :priority, :idempotency_key,
            :conversation_id, :traceparent)
    ON CONFLICT ON CONSTRAINT uq_requests_tenant_idempotency_key DO NOTHING
    RETURNING id, priority
), event AS (
    INSERT INTO request_events (request_id, kind, detail)
    SELECT id, 'accepted', jsonb_build_object('priority', priority) FROM accepted
), callback AS (
    INSERT INTO callbacks (request_id, url)
    SELECT id, CAST(:callback_url AS text) FROM accepted WHERE CAST(:callback_url AS text) IS NOT NULL
)
SELECT id FROM accepted
""").bindparams(bindparam("metadata", type_=JSONB))


def accept(conn: Connection, request_id: str, callback_url: str | None, **columns: Any) -> bool:
    """Record a new request (`columns`: tenant, customer, text, metadata, priority,
    idempotency_key, conversation_id, traceparent) with its event and callback; False, with nothing
    written, if the tenant's idempotency key names a request already."""
    row = conn.execute(_ACCEPT, {"rid": request_id, "callback_url": callback_url, **columns}).first()
    return row is not None
