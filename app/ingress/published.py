"""Recording that a request's route message was published, off the submitting caller's path.

`submit` returns once RabbitMQ confirmed the message; what is left, setting the row's
`published_at`, only tells the reconciler not to publish the request again and admission to count
it as waiting. A second UPDATE and commit per submit cost the caller a round trip and the process
a statement, so a background thread records the publishes of each moment in one UPDATE instead.

Nothing is lost if that thread never gets to it (the process is killed, the database is down):
the row stays `accepted` with no `published_at`, the reconciler publishes it again after 30 s, and
the router acts on one copy only (its decision is a conditional UPDATE), so a request is still
routed exactly once. A request the router has routed already is not republished at all.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from sqlalchemy import bindparam, func, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from app.state import Request, autocommit_scope, table_of

log = logging.getLogger(__name__)

# How long the thread waits after the first publish before it writes, so the publishes of one
# burst share an UPDATE; nobody waits for it (it only shortens the reconciler's work).
LINGER_S = 0.02
# Beyond this many unrecorded ids (the database is down for long) the oldest are left to the
# reconciler rather than kept in memory.
MAX_PENDING = 50_000

_R = table_of(Request)
_MARK = (
    update(_R)
    .where(_R.c.id == func.any(bindparam("ids", type_=ARRAY(Text))), _R.c.published_at.is_(None))
    .values(published_at=func.now())
)


class Recorder:
    """One per process: `add` queues an id, the thread writes them in batches."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: list[str] = []
        self._writing = 0  # ids taken by the thread and not yet written
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, request_id: str) -> None:
        with self._cond:
            if self._pid != os.getpid():  # a forked child: the parent's thread and ids are not ours
                self._pending, self._thread, self._pid, self._writing = [], None, os.getpid(), 0
            self._pending.append(request_id)
            if len(self._pending) > MAX_PENDING:
                del self._pending[: len(self._pending) - MAX_PENDING]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="switchboard-published", daemon=True)
                self._thread.start()
            self._cond.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write what is queued now, in the caller's thread; True if nothing is left unwritten
        (for tests, and at exit)."""
        with self._cond:
            ids, self._pending = self._pending, []
        if ids and not self._write(ids):
            return False
        deadline = time.monotonic() + timeout
        with self._cond:  # a batch the thread took before this call: wait for it to land
            while self._writing and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._writing and not self._pending

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            time.sleep(LINGER_S)
            with self._cond:
                ids, self._pending = self._pending, []
                self._writing = len(ids)
            ok = self._write(ids)
            with self._cond:
                self._writing = 0
                if not ok:
                    self._pending[:0] = ids  # try again later; the reconciler covers them meanwhile
                self._cond.notify_all()
            if not ok:
                time.sleep(1.0)

    @staticmethod
    def _write(ids: list[str]) -> bool:
        try:
            with autocommit_scope() as conn:  # one statement for the batch: it commits by itself
                conn.execute(_MARK, {"ids": ids})
        except Exception as exc:  # noqa: BLE001 - the database is unavailable: the reconciler republishes them
            log.warning(
                "could not record %d publishes (%s); retrying, and the reconciler covers them",
                len(ids),
                type(exc).__name__,
            )
            return False
        return True


_recorder = Recorder()
atexit.register(_recorder.flush)


def record(request_id: str) -> None:
    """Note that the request's route message was confirmed by the broker."""
    _recorder.add(request_id)


def flush(timeout: float = 5.0) -> bool:
    """Write every publish noted so far; True when all are recorded."""
    return _recorder.flush(timeout)
