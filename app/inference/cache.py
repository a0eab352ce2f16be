"""Exact response cache for single-shot calls (classification, FAQ-style answers).

Keyed by tenant + model + normalized messages + tools: one tenant's answers are never served to
another, whose identical prompt would otherwise learn what the first asked and when. Never used
for multi-turn agent steps: the caller opts in per call, and the workflow engine only does so for
steps declared single-shot.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Interval, bindparam, delete, func, literal_column, update
from sqlalchemy.dialects.postgresql import insert

from app.inference.provider import ChatResponse
from app.state import CachedResponse, autocommit_scope, connection_scope, table_of

_SPACES = re.compile(r"\s+")


def _normalize(value: Any) -> Any:
    # Whitespace differences do not change what a model is asked; anything else does.
    if isinstance(value, str):
        return _SPACES.sub(" ", value).strip()
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def cache_key(
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    max_tokens: int,
    params: dict[str, Any] | None = None,
    *,
    tenant: str | None = None,
) -> str:
    """`params`: the call's other parameters (temperature, response_format, ...); a JSON-mode
    answer is not the answer to the same messages without it. `tenant`: whose answer it is."""
    fields: dict[str, Any] = {
        "model": model,
        "messages": _normalize(messages),
        "tools": _normalize(tools or []),
        "max_tokens": max_tokens,
        "tenant": tenant,
    }
    if params and any(v is not None for v in params.values()):
        fields["params"] = _normalize(params)  # absent when unset: keys of plain calls stay as they were
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache(ABC):
    @abstractmethod
    def get(self, key: str) -> ChatResponse | None: ...

    @abstractmethod
    def put(self, key: str, response: ChatResponse, ttl_s: float, conn: Connection | None = None) -> None:
        """Store an answer; with `conn`, inside that transaction (a step writes it with its checkpoint)."""


class MemoryCache(ResponseCache):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, ChatResponse]] = {}

    def get(self, key: str) -> ChatResponse | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= self._clock():
                self._items.pop(key, None)
                return None
            return item[1]

    def put(self, key: str, response: ChatResponse, ttl_s: float, conn: Connection | None = None) -> None:
        with self._lock:
            self._items[key] = (self._clock() + ttl_s, response)


_CACHE = table_of(CachedResponse)
# Built once, and one statement on its own: a lookup precedes every cacheable call.
_TAKE_HIT = (
    update(_CACHE)
    .where(_CACHE.c.key == bindparam("cache_key"), _CACHE.c.expires_at > func.now())
    .values(hits=_CACHE.c.hits + 1)
    .returning(_CACHE.c.response)
)


_new_entry = insert(_CACHE)
_EXPIRES = func.now() + bindparam("ttl", type_=Interval)
# Built once, like the lookup: building and compiling an ORM insert for every cached answer cost
# more CPU than the round trip that writes it.
_PUT = _new_entry.values(
    key=bindparam("key"), model=bindparam("model"), response=bindparam("response"), expires_at=_EXPIRES
).on_conflict_do_update(
    index_elements=[_CACHE.c.key],
    set_={
        "response": _new_entry.excluded.response,
        "expires_at": _new_entry.excluded.expires_at,
        "created_at": literal_column("now()"),
    },
)


class PostgresCache(ResponseCache):
    def get(self, key: str) -> ChatResponse | None:
        with autocommit_scope() as conn:
            hit = conn.execute(_TAKE_HIT, {"cache_key": key}).first()
        return None if hit is None else ChatResponse.model_validate(hit.response)

    def put(self, key: str, response: ChatResponse, ttl_s: float, conn: Connection | None = None) -> None:
        params = {
            "key": key,
            "model": response.model,
            "response": response.model_dump(mode="json", exclude={"rate_headers"}),
            "ttl": timedelta(seconds=ttl_s),
        }
        if conn is not None:
            conn.execute(_PUT, params)
            return
        with autocommit_scope() as own:  # one statement: it commits by itself
            own.execute(_PUT, params)


def purge_expired() -> int:
    """Delete expired entries (run periodically with the reconciler), so the table stays small."""
    # On a bare connection: a Core DELETE's result has the row count (an ORM session's does not say so).
    with connection_scope() as conn:
        return conn.execute(delete(CachedResponse).where(CachedResponse.expires_at <= func.now())).rowcount
