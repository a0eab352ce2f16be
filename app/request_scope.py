"""What the current thread is working on: the request id (for log lines) and its database time.

Set by the router and specialist tasks for the length of one task (`bound`), carried into the
workflow's step threads (`carry`), read by the log filter and the database timer. Outside a task
nothing is bound and both are no-ops.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class RequestScope:
    request_id: str
    # Seconds spent in database statements; step threads add to it concurrently.
    db_s: float = 0.0
    # Tokens and cost per model of the LLM calls made for this request in this task.
    usage: dict[str, tuple[int, Decimal]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_db(self, seconds: float) -> None:
        with self._lock:
            self.db_s += seconds

    def add_usage(self, model: str, tokens: int, cost: Decimal | None) -> None:
        """`cost` None: an unpriced model; its tokens count, its cost adds nothing known."""
        with self._lock:
            before = self.usage.get(model, (0, Decimal(0)))
            self.usage[model] = (before[0] + tokens, before[1] + (cost or Decimal(0)))

    @property
    def db_ms(self) -> float:
        return round(self.db_s * 1000, 3)


_current: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "switchboard_request", default=None
)


def current() -> RequestScope | None:
    return _current.get()


def current_request_id() -> str | None:
    scope = _current.get()
    return scope.request_id if scope else None


def enter(request_id: str) -> contextvars.Token[RequestScope | None]:
    """Bind `request_id` to this thread until `leave(token)` (Celery's task_prerun/postrun)."""
    return _current.set(RequestScope(request_id))


def leave(token: contextvars.Token[RequestScope | None]) -> None:
    _current.reset(token)


@contextmanager
def bound(request_id: str) -> Iterator[RequestScope]:
    token = enter(request_id)
    scope = _current.get()
    assert scope is not None
    try:
        yield scope
    finally:
        leave(token)


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` to run in another thread with this thread's request bound (thread pools do not copy
    context variables by themselves)."""
    context = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run
