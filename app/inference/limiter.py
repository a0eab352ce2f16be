"""The shared rate limiter: requests and tokens per minute, per provider, model and API key.

GCRA (a token bucket written as one "theoretical arrival time" per bucket): a call reserves its
slot before it is made, by moving the bucket's TAT forward, and then sleeps until the slot without
holding a database connection. Refill is smooth, so there is no burst at a window edge; the burst
allowance is half the headroom, so any 60 s window stays under the provider's limit.

Two backends behind one interface, as the design asks: PostgreSQL (shared by every process on
every machine) and in-memory (unit tests, one process).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Float, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert

from app.db import RateBucket, session_scope


class WaitTooLong(Exception):
    """The slot is further away than the caller may wait; nothing was reserved."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"rate limit: next slot in {wait_s:.1f}s")
        self.wait_s = wait_s


@dataclass(frozen=True)
class Rate:
    """A limit after headroom, as GCRA parameters."""

    per_minute: float
    burst: float

    @classmethod
    def from_limit(cls, limit: int, headroom: float) -> Rate | None:
        if limit <= 0:
            return None
        effective = limit * (1.0 - headroom)
        # Any window of 60 s admits at most effective + burst <= limit * (1 - headroom / 2).
        return cls(per_minute=effective, burst=max(1.0, limit * headroom / 2))

    @property
    def interval(self) -> float:
        """Seconds per unit."""
        return 60.0 / self.per_minute


@dataclass(frozen=True)
class Demand:
    bucket: str
    rate: Rate
    units: float


def earliest(tat: float, now: float, demand: Demand) -> float:
    """When `demand` conforms to its bucket (GCRA): now, or once enough has drained."""
    cost = demand.units * demand.rate.interval
    tolerance = demand.rate.burst * demand.rate.interval
    if cost > tolerance:
        # Larger than the whole burst (a huge prompt): admit once the bucket is empty.
        return max(now, tat)
    return max(now, tat + cost - tolerance)


def advance(tat: float, start: float, demand: Demand) -> float:
    return max(tat, start) + demand.units * demand.rate.interval


@dataclass(frozen=True)
class Reservation:
    key_id: str
    start: float  # on the backend's clock
    wait_s: float
    tokens: int
    token_bucket: str | None
    token_rate: Rate | None


def bucket_name(host: str, model: str, kid: str, kind: str) -> str:
    return f"{host}/{model}/{kid}/{kind}"


@dataclass(frozen=True)
class KeyLimits:
    key_id: str
    rpm: Rate | None
    tpm: Rate | None


class Limiter(ABC):
    @abstractmethod
    def reserve(self, host: str, model: str, keys: list[KeyLimits], tokens: int, max_wait_s: float) -> Reservation:
        """Reserve a slot on the key that gets one first; raises WaitTooLong past max_wait_s."""

    @abstractmethod
    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        """Correct the token bucket by what the call really used."""

    @abstractmethod
    def pause(self, host: str, model: str, kid: str, seconds: float) -> None:
        """Nobody uses this key and model for `seconds` (the provider said so)."""

    def acquire(self, host: str, model: str, keys: list[KeyLimits], tokens: int, max_wait_s: float) -> Reservation:
        """Reserve, then sleep until the slot; no connection is held while sleeping."""
        reservation = self.reserve(host, model, keys, tokens, max_wait_s)
        if reservation.wait_s > 0:
            time.sleep(reservation.wait_s)
        return reservation


def _demands(host: str, model: str, key: KeyLimits, tokens: int) -> list[Demand]:
    demands = []
    if key.rpm:
        demands.append(Demand(bucket_name(host, model, key.key_id, "rpm"), key.rpm, 1))
    if key.tpm:
        demands.append(Demand(bucket_name(host, model, key.key_id, "tpm"), key.tpm, tokens))
    return demands


def _pause_bucket(host: str, model: str, kid: str) -> str:
    return bucket_name(host, model, kid, "rpm")


def _plan(
    state: dict[str, tuple[float, float]], now: float, host: str, model: str, keys: list[KeyLimits], tokens: int
) -> tuple[KeyLimits, float, list[Demand]]:
    """The key with the earliest slot, the slot, and its demands. `state` maps bucket -> (tat, paused_until)."""
    best: tuple[float, int, KeyLimits, list[Demand]] | None = None
    for index, key in enumerate(keys):
        demands = _demands(host, model, key, tokens)
        paused = state.get(_pause_bucket(host, model, key.key_id), (0.0, 0.0))[1]
        start = max([now, paused, *(earliest(state.get(d.bucket, (0.0, 0.0))[0], now, d) for d in demands)])
        if best is None or (start, index) < best[:2]:
            best = (start, index, key, demands)
    assert best is not None
    return best[2], best[0], best[3]


class MemoryLimiter(Limiter):
    """One process only: for unit tests and single-process tools."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        self._paused: dict[str, float] = {}

    def _state(self) -> dict[str, tuple[float, float]]:
        names = set(self._tat) | set(self._paused)
        return {n: (self._tat.get(n, 0.0), self._paused.get(n, 0.0)) for n in names}

    def reserve(self, host: str, model: str, keys: list[KeyLimits], tokens: int, max_wait_s: float) -> Reservation:
        with self._lock:
            now = self._clock()
            key, start, demands = _plan(self._state(), now, host, model, keys, tokens)
            if start - now > max_wait_s:
                raise WaitTooLong(start - now)
            for d in demands:
                self._tat[d.bucket] = advance(self._tat.get(d.bucket, 0.0), start, d)
        tpm = key.tpm
        return Reservation(key.key_id, start, start - now, tokens,
                           bucket_name(host, model, key.key_id, "tpm") if tpm else None, tpm)

    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        if reservation.token_bucket is None or reservation.token_rate is None:
            return
        with self._lock:
            delta = (actual_tokens - reservation.tokens) * reservation.token_rate.interval
            tat = self._tat.get(reservation.token_bucket, 0.0)
            self._tat[reservation.token_bucket] = max(tat + delta, min(tat, self._clock()))

    def pause(self, host: str, model: str, kid: str, seconds: float) -> None:
        with self._lock:
            bucket = _pause_bucket(host, model, kid)
            self._paused[bucket] = max(self._paused.get(bucket, 0.0), self._clock() + seconds)


_DB_NOW = literal_column("extract(epoch from clock_timestamp())", type_=Float)


class PostgresLimiter(Limiter):
    """Shared by every process: buckets are rows, reservations are short locked transactions, and
    time is the database's clock, so machines with skewed clocks still agree."""

    def reserve(self, host: str, model: str, keys: list[KeyLimits], tokens: int, max_wait_s: float) -> Reservation:
        names = sorted({d.bucket for k in keys for d in _demands(host, model, k, tokens)}
                       | {_pause_bucket(host, model, k.key_id) for k in keys})
        with session_scope() as session:
            session.execute(
                insert(RateBucket).values([{"bucket": n, "tat": 0.0} for n in names]).on_conflict_do_nothing()
            )
            # Locked in name order, so concurrent reservations never deadlock.
            rows = session.execute(
                select(RateBucket.bucket, RateBucket.tat, RateBucket.paused_until)
                .where(RateBucket.bucket.in_(names))
                .order_by(RateBucket.bucket)
                .with_for_update()
            ).all()
            now = float(session.scalar(select(_DB_NOW)))
            state = {r.bucket: (r.tat, r.paused_until) for r in rows}
            key, start, demands = _plan(state, now, host, model, keys, tokens)
            if start - now > max_wait_s:
                raise WaitTooLong(start - now)  # rolls back: nothing reserved
            for d in demands:
                session.execute(
                    update(RateBucket)
                    .where(RateBucket.bucket == d.bucket)
                    .values(tat=advance(state[d.bucket][0], start, d), updated_at=func.now())
                )
        tpm = key.tpm
        return Reservation(key.key_id, start, start - now, tokens,
                           bucket_name(host, model, key.key_id, "tpm") if tpm else None, tpm)

    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        if reservation.token_bucket is None or reservation.token_rate is None or actual_tokens == reservation.tokens:
            return
        delta = (actual_tokens - reservation.tokens) * reservation.token_rate.interval
        with session_scope() as session:
            # Giving back unused tokens never moves the bucket into the past.
            session.execute(
                update(RateBucket)
                .where(RateBucket.bucket == reservation.token_bucket)
                .values(tat=func.greatest(RateBucket.tat + delta, func.least(RateBucket.tat, _DB_NOW)))
            )

    def pause(self, host: str, model: str, kid: str, seconds: float) -> None:
        bucket = _pause_bucket(host, model, kid)
        with session_scope() as session:
            session.execute(
                insert(RateBucket)
                .values(bucket=bucket, tat=0.0, paused_until=_DB_NOW + seconds)
                .on_conflict_do_update(
                    index_elements=[RateBucket.bucket],
                    set_={"paused_until": func.greatest(RateBucket.paused_until, _DB_NOW + seconds)},
                )
            )
