"""Database time per request: every statement's duration is added to the bound request's scope."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event

from app.request_scope import current

_STARTED = "switchboard_statement_started"


def install(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _before)
    event.listen(engine, "after_cursor_execute", _after)


def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    if current() is not None:
        conn.info[_STARTED] = time.perf_counter()


def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    started = conn.info.pop(_STARTED, None)
    scope = current()
    if started is not None and scope is not None:
        scope.add_db(time.perf_counter() - started)
