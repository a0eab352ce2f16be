"""Circuit breaker per provider and model, shared by every process.

Closed: calls go through. Open: after `consecutive` failures in a row, or a failure rate of at
least `rate` over the last `window_s` seconds (with `min_calls` calls); nobody calls the target
until `cooldown_s` has passed. Half-open: one caller claims the probe; its success closes the
breaker, its failure opens it again. Only failures that say the target is unhealthy count (5xx,
timeouts, connection errors), never a 4xx or a 429.

Backends: PostgreSQL (shared, transitions recorded in breaker_events) and in-memory (unit tests).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Float, bindparam, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert

from app.errors import InferenceError
from app.inference.call_log import UNFINISHED
from app.inference.errors import FailureClass
from app.state import BreakerEvent, CircuitBreaker, LlmCall, autocommit_scope, session_scope, table_of

UNHEALTHY = frozenset({FailureClass.SERVER, FailureClass.TIMEOUT, FailureClass.CONNECTION})


class BreakerOpen(InferenceError):
    def __init__(self, target: str, retry_in_s: float) -> None:
        super().__init__(f"circuit open for {target}; next probe in {retry_in_s:.1f}s")
        self.target = target
        self.retry_in_s = retry_in_s


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive: int = 5
    rate: float = 0.5
    window_s: float = 30.0
    min_calls: int = 10
    cooldown_s: float = 15.0


@dataclass(frozen=True)
class Permit:
    target: str
    probe: bool


class Breaker(ABC):
    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy

    @abstractmethod
    def before_call(self, target: str) -> Permit:
        """A permit to call, or BreakerOpen."""

    @abstractmethod
    def on_success(self, permit: Permit) -> None: ...

    @abstractmethod
    def on_failure(self, permit: Permit, kind: FailureClass) -> bool:
        """Count a failure; True if the breaker is open now."""

    @abstractmethod
    def state(self, target: str) -> str: ...


@dataclass
class _Memo:
    state: str = "closed"
    consecutive: int = 0
    opened_at: float = 0.0
    probe_started: float = 0.0
    calls: deque[tuple[float, bool]] = field(default_factory=deque)


class MemoryBreaker(Breaker):
    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(policy)
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: dict[str, _Memo] = {}
        self.transitions: list[tuple[str, str, str, str]] = []

    def _memo(self, target: str) -> _Memo:
        return self._targets.setdefault(target, _Memo())

    def _move(self, target: str, memo: _Memo, to: str, reason: str) -> None:
        self.transitions.append((target, memo.state, to, reason))
        memo.state = to

    def before_call(self, target: str) -> Permit:
        with self._lock:
            memo, now = self._memo(target), self._clock()
            if memo.state == "closed":
                return Permit(target, probe=False)
            if memo.state == "open" and now - memo.opened_at >= self.policy.cooldown_s:
                self._move(target, memo, "half_open", "cooldown over; probing")
                memo.probe_started = now
                return Permit(target, probe=True)
            if memo.state == "half_open" and now - memo.probe_started > 2 * self.policy.cooldown_s:
                memo.probe_started = now  # the prober vanished; another caller probes
                return Permit(target, probe=True)
            raise BreakerOpen(target, max(0.1, memo.opened_at + self.policy.cooldown_s - now))

    def on_success(self, permit: Permit) -> None:
        with self._lock:
            memo = self._memo(permit.target)
            memo.consecutive = 0
            memo.calls.append((self._clock(), True))
            if permit.probe and memo.state == "half_open":
                self._move(permit.target, memo, "closed", "probe succeeded")

    def on_failure(self, permit: Permit, kind: FailureClass) -> bool:
        if kind not in UNHEALTHY:
            return False
        with self._lock:
            memo, now = self._memo(permit.target), self._clock()
            memo.consecutive += 1
            memo.calls.append((now, False))
            while memo.calls and memo.calls[0][0] < now - self.policy.window_s:
                memo.calls.popleft()
            failures = sum(1 for _, ok in memo.calls if not ok)
            reason = _trip_reason(self.policy, memo.consecutive, len(memo.calls), failures, permit.probe)
            if reason and memo.state != "open":
                memo.opened_at = now
                self._move(permit.target, memo, "open", reason)
            return memo.state == "open"

    def state(self, target: str) -> str:
        return self._memo(target).state


def _trip_reason(
    policy: BreakerPolicy, consecutive: int, calls: int, failures: int, probe: bool
) -> str | None:
    if probe:
        return "probe failed"
    if consecutive >= policy.consecutive:
        return f"{consecutive} consecutive failures"
    if calls >= policy.min_calls and failures / calls >= policy.rate:
        return f"{failures} of {calls} calls failed in {policy.window_s:g}s"
    return None


_DB_NOW = literal_column("extract(epoch from clock_timestamp())", type_=Float)


_BREAKERS = table_of(CircuitBreaker)
_READ_STATE = select(
    _BREAKERS.c.state, _BREAKERS.c.opened_at, _BREAKERS.c.probe_started, _DB_NOW.label("now")
).where(_BREAKERS.c.target == bindparam("target"))


class PostgresBreaker(Breaker):
    """State in `circuit_breakers`, transitions in `breaker_events`. A closed state is remembered
    per process for `cache_s`, so the hot path reads the database at most that often per target."""

    def __init__(self, policy: BreakerPolicy, cache_s: float = 0.5) -> None:
        super().__init__(policy)
        self._cache_s = cache_s
        self._closed_until: dict[str, float] = {}

    def before_call(self, target: str) -> Permit:
        if self._closed_until.get(target, 0.0) > time.monotonic():
            return Permit(target, probe=False)
        # The common answer (closed, or no row) is one self-committing read of a statement built
        # once; only a breaker that is not closed opens a transaction, to claim the probe.
        with autocommit_scope() as conn:
            row = conn.execute(_READ_STATE, {"target": target}).first()
        if row is None or row.state == "closed":
            self._closed_until[target] = time.monotonic() + self._cache_s
            return Permit(target, probe=False)
        with session_scope() as session:
            cooled = row.now - row.opened_at >= self.policy.cooldown_s
            stale_probe = (
                row.state == "half_open" and row.now - row.probe_started > 2 * self.policy.cooldown_s
            )
            if (row.state == "open" and cooled) or stale_probe:
                # Only one process wins the conditional update and becomes the prober.
                claimed = session.execute(
                    update(CircuitBreaker)
                    .where(
                        CircuitBreaker.target == target,
                        CircuitBreaker.state == row.state,
                        CircuitBreaker.probe_started == row.probe_started,
                    )
                    .values(state="half_open", probe_started=_DB_NOW)
                    .returning(CircuitBreaker.target)
                ).first()
                if claimed:
                    if row.state == "open":
                        session.add(
                            BreakerEvent(
                                target=target,
                                from_state="open",
                                to_state="half_open",
                                reason="cooldown over; probing",
                            )
                        )
                    return Permit(target, probe=True)
            retry_in = max(0.5, row.opened_at + self.policy.cooldown_s - row.now)
        raise BreakerOpen(target, retry_in)

    def on_success(self, permit: Permit) -> None:
        if not permit.probe:
            return  # consecutive failures are measured from the record, so success writes nothing
        with session_scope() as session:
            closed = session.execute(
                update(CircuitBreaker)
                .where(CircuitBreaker.target == permit.target, CircuitBreaker.state == "half_open")
                .values(state="closed", consecutive_failures=0)
                .returning(CircuitBreaker.target)
            ).first()
            if closed:
                session.add(
                    BreakerEvent(
                        target=permit.target,
                        from_state="half_open",
                        to_state="closed",
                        reason="probe succeeded",
                    )
                )

    def on_failure(self, permit: Permit, kind: FailureClass) -> bool:
        if kind not in UNHEALTHY:
            return False
        provider, _, model = permit.target.partition("/")
        with session_scope() as session:
            session.execute(insert(CircuitBreaker).values(target=permit.target).on_conflict_do_nothing())
            row = session.execute(
                select(CircuitBreaker.state).where(CircuitBreaker.target == permit.target).with_for_update()
            ).one()
            if row.state == "open":
                return True
            # The calls already recorded (the caller records this failure before reporting it);
            # calls still unanswered say nothing about the target's health yet.
            recent = (
                session.execute(
                    select(LlmCall.outcome)
                    .where(
                        LlmCall.provider == provider,
                        LlmCall.model == model,
                        LlmCall.created_at
                        > func.now() - text(f"interval '{float(self.policy.window_s)} seconds'"),
                        LlmCall.cache_hit.is_(False),
                        LlmCall.outcome.not_in(UNFINISHED),
                    )
                    .order_by(LlmCall.id.desc())
                )
                .scalars()
                .all()
            )
            unhealthy = {k.value for k in UNHEALTHY}
            consecutive = next(
                (i for i, outcome in enumerate(recent) if outcome not in unhealthy), len(recent)
            )
            failures = sum(1 for outcome in recent if outcome in unhealthy)
            reason = _trip_reason(self.policy, consecutive, len(recent), failures, permit.probe)
            if reason:
                session.execute(
                    update(CircuitBreaker)
                    .where(CircuitBreaker.target == permit.target)
                    .values(state="open", opened_at=_DB_NOW, consecutive_failures=consecutive)
                )
                session.add(
                    BreakerEvent(target=permit.target, from_state=row.state, to_state="open", reason=reason)
                )
        self._closed_until.pop(permit.target, None)
        return reason is not None

    def state(self, target: str) -> str:
        with session_scope() as session:
            return (
                session.scalar(select(CircuitBreaker.state).where(CircuitBreaker.target == target))
                or "closed"
            )
