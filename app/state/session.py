"""One engine per process and short transactions.

Nothing holds a connection across an LLM call: callers open `session_scope()` around the reads and
writes they need and close it before doing I/O elsewhere. Nothing needs a session across
transactions either (only transaction-level advisory locks, no LISTEN, no session SET, no held
cursors), so every path works behind PgBouncer in transaction mode (`database_pgbouncer`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.state import db_time as timing

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: Engine | None = None
_engine_pid: int | None = None
_factory: sessionmaker[Session] | None = None


def get_engine() -> Engine:
    global _engine, _engine_pid, _factory
    # A forked child must not reuse its parent's sockets; it builds its own pool.
    if _engine is None or _engine_pid != os.getpid():
        with _lock:
            if _engine is None or _engine_pid != os.getpid():
                settings = get_settings()
                url = make_url(settings.database_url.get_secret_value())
                connect_args: dict[str, Any] = {
                    "application_name": f"switchboard:{settings.process_name}:{os.getpid()}",
                    **driver_args(settings),
                }
                if not settings.database_pgbouncer:
                    # Added to any server options the URL sets itself, which connect_args would replace.
                    connect_args["options"] = " ".join(
                        filter(
                            None,
                            [
                                str(url.query.get("options", "")),
                                f"-c statement_timeout={int(settings.database_statement_timeout_s * 1000)}",
                            ],
                        )
                    )
                _engine = create_engine(
                    url,
                    pool_size=settings.database_pool_size,
                    max_overflow=settings.database_max_overflow,
                    # No pre-ping: it costs a round trip per transaction. After a database restart the
                    # first failed statement invalidates the whole pool, and the failure is transient
                    # to the caller (step retry or task retry), so nothing is lost.
                    pool_pre_ping=False,
                    pool_recycle=1800,
                    # application_name names every connection by process role and pid in
                    # pg_stat_activity, so an operator can see which pool holds how many connections
                    # (PgBouncer passes it on to the server connection it lends).
                    connect_args=connect_args,
                )
                if settings.database_pgbouncer and settings.database_statement_timeout_s:
                    event.listen(_engine, "first_connect", _check_statement_timeout)
                timing.install(_engine)
                _engine_pid = os.getpid()
                _factory = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def driver_args(settings: Settings | None = None) -> dict[str, Any]:
    """What every engine of this process (the pool, `migrate`, preflight) passes to psycopg."""
    if (settings or get_settings()).database_pgbouncer:
        # psycopg prepares a statement on the server after its fifth run on a connection; behind
        # PgBouncer in transaction mode the next transaction runs on another server connection,
        # where that statement is missing ("prepared statement _pg3_0 does not exist").
        return {"prepare_threshold": None}
    return {}


def _check_statement_timeout(dbapi_connection: Any, _record: Any) -> None:
    """Behind PgBouncer the timeout cannot travel as a startup option: say so once per process
    when the server applies none (`switchboard migrate` stores it on the database)."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        row = cursor.fetchone()
    dbapi_connection.rollback()
    if row is not None and row[0] in ("0", "0ms"):
        log.warning(
            "database: behind PgBouncer, and the server applies no statement_timeout: run "
            "`switchboard migrate` (it stores the timeout on the database) or set it on the role"
        )


def dispose_engine() -> None:
    global _engine, _factory
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _factory = None


@contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    get_engine()
    assert _factory is not None
    session = _factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def autocommit_scope() -> Iterator[Connection]:
    """A connection on which each statement commits by itself: for reads, and for writes that are
    one statement. It saves a transaction's BEGIN and COMMIT round trips, and in a worker running
    hundreds of threads each round trip also means waiting for the GIL again while the pooled
    connection stays checked out: fewer round trips, fewer connections a worker needs."""
    with get_engine().connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def connection_scope() -> Iterator[Connection]:
    """A transaction on a bare connection, for hot paths that need no ORM session."""
    with get_engine().begin() as conn:
        yield conn
