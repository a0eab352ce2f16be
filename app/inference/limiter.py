"""The shared rate limiter: a call reserves its slot in every bucket that applies to it, at once.

GCRA (a token bucket written as one "theoretical arrival time" per bucket): a call reserves its
slot before it is made by moving forward the TAT of each of its buckets (its API key's requests and
tokens, its model group's, a provider-wide cap: app/inference/limits.py says which), then sleeps
until the slot without holding a database connection. All or nothing: the slot is the earliest
moment every bucket has room, and when it is too far away no bucket moves. Refill is smooth, so
there is no burst at a window edge; the burst allowance is half the headroom, so any 60 s window
stays under each limit.

A bucket may carry a limit the provider reported (`learn`); a reservation applies the lower of the
configured and the learned limit, read in the same statement, so the whole fleet adopts it at once.

Two backends behind one interface, as the design asks: PostgreSQL (shared by every process on
every machine, one statement per reservation) and in-memory (unit tests, one process).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert

from app.errors import InferenceError
from app.state import LimitEvent, RateBucket, autocommit_scope, session_scope


class WaitTooLong(InferenceError):
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
    def from_limit(cls, limit: float, headroom: float) -> Rate | None:
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
    """`units` of one bucket. `limit` is the configured limit before headroom (None: none
    configured, though a learned one may apply); `rate` is what that limit allows."""

    bucket: str
    units: float
    limit: float | None
    headroom: float = 0.0
    tokens: bool = False  # reconciled with the call's real usage
    rate: Rate | None = None

    @classmethod
    def of(
        cls, bucket: str, units: float, limit: float | None, headroom: float, *, tokens: bool = False
    ) -> Demand:
        limit = limit if limit and limit > 0 else None
        rate = Rate.from_limit(limit, headroom) if limit else None
        return cls(bucket, units, limit, headroom, tokens, rate)

    def effective(self, learned: float | None) -> tuple[float | None, Rate | None]:
        """The limit in force and its rate: the learned limit where it is lower than the configured one."""
        if learned is not None and learned > 0 and (self.limit is None or learned < self.limit):
            return learned, Rate.from_limit(learned, self.headroom)
        return self.limit, self.rate


@dataclass(frozen=True)
class Candidate:
    """One way to make the call (an API key) and every bucket it would draw on."""

    key_id: str
    demands: tuple[Demand, ...]


@dataclass(frozen=True)
class Held:
    """A bucket as a reservation found it: the limit in force, and what it learned so far."""

    bucket: str
    units: float
    tokens: bool
    limit: float | None
    learned: float | None
    interval: float | None  # seconds per unit at the rate in force; None: no limit in force


@dataclass(frozen=True)
class Reservation:
    key_id: str
    start: float  # on the backend's clock
    wait_s: float
    held: tuple[Held, ...]

    def bucket(self, name: str) -> Held | None:
        return next((h for h in self.held if h.bucket == name), None)


def earliest(tat: float, now: float, rate: Rate | None, units: float) -> float:
    """When `units` conform to a bucket (GCRA): now, or once enough has drained."""
    if rate is None:
        return now
    cost = units * rate.interval
    tolerance = rate.burst * rate.interval
    if cost > tolerance:
        # Larger than the whole burst (a huge prompt): admit once the bucket is empty.
        return max(now, tat)
    return max(now, tat + cost - tolerance)


class Limiter(ABC):
    @abstractmethod
    def reserve(self, candidates: Sequence[Candidate], max_wait_s: float) -> Reservation:
        """Reserve, in every bucket of the candidate whose slot comes first, the same slot; raises
        WaitTooLong past max_wait_s, and then nothing is reserved anywhere."""

    @abstractmethod
    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        """Correct every token bucket the reservation drew on by what the call really used."""

    @abstractmethod
    def pause(self, bucket: str, seconds: float) -> None:
        """Nobody draws on `bucket` for `seconds` (the provider said so)."""

    @abstractmethod
    def learn(self, bucket: str, limit: float, configured: float | None, source: str) -> None:
        """The provider reported `limit` for this bucket: every reservation applies it from now on
        where it is lower than the configured limit. Recorded as a limit event."""

    def acquire(self, candidates: Sequence[Candidate], max_wait_s: float) -> Reservation:
        """Reserve, then sleep until the slot; no connection is held while sleeping."""
        reservation = self.reserve(candidates, max_wait_s)
        if reservation.wait_s > 0:
            time.sleep(reservation.wait_s)
        return reservation


@dataclass
class _State:
    tat: float = 0.0
    paused_until: float = 0.0
    learned: float | None = None


def _plan(
    states: dict[str, _State], now: float, candidates: Sequence[Candidate]
) -> tuple[int, float, list[Held]]:
    """The candidate with the earliest slot (the first on a tie), the slot, and its buckets."""
    best: tuple[float, int, list[Held]] | None = None
    for index, candidate in enumerate(candidates):
        start, held = now, []
        for d in candidate.demands:
            state = states.get(d.bucket, _State())
            limit, rate = d.effective(state.learned)
            start = max(start, state.paused_until, earliest(state.tat, now, rate, d.units))
            interval = rate.interval if rate else None
            held.append(Held(d.bucket, d.units, d.tokens, limit, state.learned, interval))
        if best is None or start < best[0]:
            best = (start, index, held)
    assert best is not None, "no candidate to reserve for"
    return best[1], best[0], best[2]


class MemoryLimiter(Limiter):
    """One process only: for unit tests and single-process tools."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}
        self.events: list[tuple[str, float | None, float, float | None, str]] = []

    def reserve(self, candidates: Sequence[Candidate], max_wait_s: float) -> Reservation:
        with self._lock:
            now = self._clock()
            index, start, held = _plan(self._states, now, candidates)
            if start - now > max_wait_s:
                raise WaitTooLong(start - now)
            for h in held:
                if h.interval is not None:
                    state = self._states.setdefault(h.bucket, _State())
                    state.tat = max(state.tat, start) + h.units * h.interval
        return Reservation(candidates[index].key_id, start, start - now, tuple(held))

    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        with self._lock:
            for h in reservation.held:
                if h.tokens and h.interval is not None:
                    state = self._states.setdefault(h.bucket, _State())
                    # Giving back unused tokens never moves the bucket into the past.
                    moved = state.tat + (actual_tokens - h.units) * h.interval
                    state.tat = max(moved, min(state.tat, self._clock()))

    def pause(self, bucket: str, seconds: float) -> None:
        with self._lock:
            state = self._states.setdefault(bucket, _State())
            state.paused_until = max(state.paused_until, self._clock() + seconds)

    def learn(self, bucket: str, limit: float, configured: float | None, source: str) -> None:
        with self._lock:
            state = self._states.setdefault(bucket, _State())
            if state.learned != limit:
                self.events.append((bucket, state.learned, limit, configured, source))
                state.learned = limit

    def learned(self, bucket: str) -> float | None:
        state = self._states.get(bucket)
        return state.learned if state else None


# One statement per reservation: lock every bucket of every candidate (in name order, so
# concurrent reservations never deadlock), apply learned limits, compute each candidate's earliest
# slot by GCRA, pick the first, and advance that candidate's buckets only if the slot is within
# the caller's wait and every bucket row exists. Rows are locked before they are read, so the
# values used are the latest committed ones; the database's clock is the one clock every machine
# shares. The arithmetic is `_plan` and `Demand.effective`, written in SQL.
_RESERVE = text("""
WITH d AS (
    SELECT * FROM unnest(CAST(:bucket AS text[]), CAST(:cand AS int[]), CAST(:units AS float8[]),
                         CAST(:lim AS float8[]), CAST(:per_min AS float8[]), CAST(:burst AS float8[]),
                         CAST(:headroom AS float8[]), CAST(:tokens AS boolean[]))
        AS d(bucket, cand, units, lim, per_min, burst, headroom, tokens)
),
clock AS MATERIALIZED (SELECT extract(epoch FROM clock_timestamp())::float8 AS now,
                               set_config('synchronous_commit', :commit, true) AS commit),
locked AS (
    SELECT b.bucket, b.tat, b.paused_until, b.learned_limit FROM rate_buckets b
    WHERE b.bucket = ANY(CAST(:names AS text[])) ORDER BY b.bucket FOR UPDATE
),
complete AS MATERIALIZED (SELECT count(*) = cardinality(CAST(:names AS text[])) AS ok FROM locked),
r AS (
    SELECT d.bucket, d.cand, d.units, d.tokens, d.lim AS configured, l.tat, l.paused_until, l.learned_limit,
           (l.learned_limit > 0 AND (d.lim IS NULL OR l.learned_limit < d.lim)) IS TRUE AS use_learned,
           d.per_min, d.burst, d.headroom, clock.now
    FROM d JOIN locked l USING (bucket) CROSS JOIN clock
),
g AS (
    SELECT r.*,
           CASE WHEN use_learned THEN learned_limit ELSE configured END AS in_force,
           CASE WHEN use_learned THEN 60 / (learned_limit * (1 - headroom)) ELSE 60 / per_min END AS step,
           CASE WHEN use_learned THEN greatest(1, learned_limit * headroom / 2) ELSE burst END AS allow
    FROM r
),
e AS (
    SELECT g.*,
           CASE WHEN step IS NULL THEN now
                WHEN units > allow THEN greatest(now, tat)
                ELSE greatest(now, tat + (units - allow) * step) END AS conforms
    FROM g
),
best AS MATERIALIZED (
    SELECT cand, greatest(max(conforms), max(paused_until), max(now)) AS start, max(now) AS now
    FROM e GROUP BY cand ORDER BY start, cand LIMIT 1
),
advanced AS (
    UPDATE rate_buckets b
    SET tat = CASE WHEN e.step IS NULL THEN b.tat ELSE greatest(e.tat, best.start) + e.units * e.step END,
        configured_limit = e.configured, updated_at = now()
    FROM e, best, complete
    WHERE b.bucket = e.bucket AND e.cand = best.cand AND complete.ok AND best.start - best.now <= :max_wait
    RETURNING b.bucket
)
SELECT e.bucket, e.units, e.tokens, e.in_force, e.learned_limit, e.step, best.cand, best.start, best.now,
       complete.ok AS complete
FROM e JOIN best USING (cand) CROSS JOIN complete
""")

# Locked in name order like a reservation, so the two never deadlock.
_RECONCILE = text("""
WITH v AS (SELECT * FROM unnest(CAST(:bucket AS text[]), CAST(:delta AS float8[])) AS v(bucket, delta)),
commit AS MATERIALIZED (SELECT set_config('synchronous_commit', :commit, true) AS commit),
locked AS (SELECT b.bucket FROM rate_buckets b WHERE b.bucket = ANY(CAST(:bucket AS text[]))
           ORDER BY b.bucket FOR UPDATE)
UPDATE rate_buckets b
SET tat = greatest(b.tat + v.delta, least(b.tat, extract(epoch FROM clock_timestamp())))
FROM v JOIN locked USING (bucket) CROSS JOIN commit WHERE b.bucket = v.bucket
""")


class PostgresLimiter(Limiter):
    """Shared by every process: buckets are rows, a reservation is one statement on an
    autocommit connection, and time is the database's clock, so machines with skewed clocks
    still agree.

    The statement commits asynchronously (`synchronous_commit = off` for its own transaction only):
    a bucket row is locked by every reservation of the fleet, and a synchronous commit holds that
    lock through a WAL flush, which bounds a hot bucket at one flush per reservation. Visibility
    and locking are unchanged (the next reservation sees this one at once); what is given up is
    durability across a PostgreSQL crash, which may forget the reservations of the last
    `wal_writer_delay` x 3 (0.6 s by default) and so admit that much again once.
    `synchronous_commit=True` keeps the flush."""

    def __init__(self, *, synchronous_commit: bool = False) -> None:
        self._commit = "on" if synchronous_commit else "off"

    def reserve(self, candidates: Sequence[Candidate], max_wait_s: float) -> Reservation:
        demands = [(i, d) for i, c in enumerate(candidates) for d in c.demands]
        names = sorted({d.bucket for _, d in demands})
        params = {
            "bucket": [d.bucket for _, d in demands],
            "cand": [i for i, _ in demands],
            "units": [float(d.units) for _, d in demands],
            "lim": [None if d.limit is None else float(d.limit) for _, d in demands],
            "per_min": [d.rate.per_minute if d.rate else None for _, d in demands],
            "burst": [d.rate.burst if d.rate else None for _, d in demands],
            "headroom": [d.headroom for _, d in demands],
            "tokens": [d.tokens for _, d in demands],
            "names": names,
            "max_wait": max_wait_s,
            "commit": self._commit,
        }
        for attempt in range(2):
            with autocommit_scope() as conn:
                rows = conn.execute(_RESERVE, params).all()
                if rows and rows[0].complete:
                    break
                if attempt:
                    raise RuntimeError(f"rate buckets {names} could not be created")
                # A bucket's first use anywhere: create the rows, then reserve again.
                conn.execute(
                    insert(RateBucket)
                    .values([{"bucket": n, "tat": 0.0} for n in names])
                    .on_conflict_do_nothing()
                )
        first = rows[0]
        wait = first.start - first.now
        if wait > max_wait_s:
            raise WaitTooLong(wait)  # the statement moved nothing
        held = {
            r.bucket: Held(r.bucket, r.units, r.tokens, r.in_force, r.learned_limit, r.step) for r in rows
        }
        chosen = candidates[first.cand]
        return Reservation(chosen.key_id, first.start, wait, tuple(held[d.bucket] for d in chosen.demands))

    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        moves = [
            (h.bucket, (actual_tokens - h.units) * h.interval)
            for h in reservation.held
            if h.tokens and h.interval is not None and actual_tokens != h.units
        ]
        if not moves:
            return
        with autocommit_scope() as conn:
            conn.execute(
                _RECONCILE,
                {"bucket": [b for b, _ in moves], "delta": [d for _, d in moves], "commit": self._commit},
            )

    def pause(self, bucket: str, seconds: float) -> None:
        with autocommit_scope() as conn:
            conn.execute(
                text("""
                INSERT INTO rate_buckets (bucket, tat, paused_until)
                VALUES (:bucket, 0, extract(epoch FROM clock_timestamp()) + :s)
                ON CONFLICT (bucket) DO UPDATE SET paused_until = greatest(rate_buckets.paused_until,
                                                                          excluded.paused_until)
            """),
                {"bucket": bucket, "s": seconds},
            )

    def learn(self, bucket: str, limit: float, configured: float | None, source: str) -> None:
        with session_scope() as session:
            previous = session.execute(
                text("SELECT learned_limit FROM rate_buckets WHERE bucket = :b FOR UPDATE"), {"b": bucket}
            ).scalar_one_or_none()
            if previous == limit:
                return  # another process learned it first
            session.execute(
                insert(RateBucket)
                .values(bucket=bucket, tat=0.0, learned_limit=limit, learned_at=func.now())
                .on_conflict_do_update(
                    index_elements=[RateBucket.bucket],
                    set_={"learned_limit": limit, "learned_at": func.now()},
                )
            )
            session.add(
                LimitEvent(
                    bucket=bucket,
                    previous_limit=previous,
                    learned_limit=limit,
                    configured_limit=configured,
                    source=source,
                )
            )
