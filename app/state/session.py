"""One engine per process and short transactions.

Nothing holds a connection across an LLM call: callers open `session_scope()` around the reads and
writes they need and close it before doing I/O elsewhere.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.state import db_time as timing

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
                # Added to any server options the URL sets itself, which connect_args would replace.
                options = " ".join(
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
                    # Names every connection by process role and pid in pg_stat_activity, so an
                    # operator can see which pool holds how many connections.
                    connect_args={
                        "application_name": f"switchboard:{settings.process_name}:{os.getpid()}",
                        "options": options,
                    },
                )
                timing.install(_engine)
                _engine_pid = os.getpid()
                _factory = sessionmaker(_engine, expire_on_commit=False)
    return _engine


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
