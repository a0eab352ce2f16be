"""Leases on the shared limiter: one round trip reserves a few calls' worth, the process hands them out.

A hot bucket set takes one reservation at a time in PostgreSQL (its rows are locked by every
reservation of the fleet, bench/limiter.py), so the fleet's rate on it is bounded by that row's
round trips, not by the limit. With `SWITCHBOARD_LIMITER_LEASE=N` (N >= 2), a process that finds no
lease reserves N calls' worth at once (N requests in each request bucket, N times the call's tokens
in each token bucket: one reservation of the wrapped backend, all or nothing as ever), takes one,
and serves the next calls for the same buckets from what it holds, without a round trip.

What keeps the fleet under every limit:
- A lease is only taken when it conforms at once (wait 0) and never larger than any bucket's burst
  in force (the learned limit where one was learned), so admitting it is what GCRA admits anyway.
- What a lease holds is used within LEASE_TTL_S of its reservation, then given back (the buckets'
  TATs move back, never into the past). A unit used up to TTL after its slot makes any window of
  60 s hold at most effective x (60 + TTL) / 60 + burst, which stays under the limit while
  TTL <= 30 x headroom / (1 - headroom) (3.3 s at the default 10%): the TTL is the lower of
  LEASE_TTL_S and that, and with no headroom there is no lease at all.
- A pause or a learned limit on one of its buckets voids the process's lease at once (not given
  back: the provider asked for less); other processes' leases run out within the TTL.
What it costs: a process may hold up to N-1 calls' worth others cannot use for up to the TTL, and
what a process holds when its lease runs out is given back on its next call (a process that stops
calling gives nothing back; the buckets refill as ever, within the leftover's worth of time).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from app.inference.limiter import Candidate, Demand, Held, Limiter, Reservation, WaitTooLong

LEASE_TTL_S = 0.5
# After a lease could not be had at once (the buckets are near their limit), reserve one call at a
# time for this long: leases then only add a refused round trip.
_BACKOFF_S = 1.0


@dataclass
class _Lease:
    key_id: str
    start: float
    held: tuple[Held, ...]  # per bucket, in the candidate's order
    left: list[float]  # units not handed out yet, per bucket
    expires: float  # on the process's clock


def _burst(d: Demand, seen: Held | None) -> float | None:
    """The burst in force for `d`'s bucket: the learned limit's where the last reservation found one
    in force, else the configured one's; None when no limit is in force."""
    if seen is not None and seen.learned is not None and seen.limit == seen.learned:
        return max(1.0, seen.learned * d.headroom / 2)
    return d.rate.burst if d.rate else None


def _ttl(demands: Sequence[Demand]) -> float:
    """How long a lease may be used: LEASE_TTL_S, or less where a bucket's headroom is small."""
    return min([LEASE_TTL_S, *(30 * d.headroom / (1 - d.headroom) for d in demands if d.headroom < 1)])


class LeasingLimiter(Limiter):
    """Wraps a shared backend (PostgreSQL or Redis); see the module's docstring."""

    def __init__(self, inner: Limiter, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[tuple[str, ...], _Lease] = {}
        self._seen: dict[str, Held] = {}
        self._no_lease_until: dict[tuple[str, ...], float] = {}

    @staticmethod
    def _names(candidate: Candidate) -> tuple[str, ...]:
        return tuple(d.bucket for d in candidate.demands)

    def _from_lease(
        self, candidates: Sequence[Candidate], now: float
    ) -> tuple[Reservation | None, list[_Lease]]:
        """A reservation out of a lease the process holds, and the expired leases to give back."""
        with self._lock:
            # Every lease that ran out, whichever buckets this call draws on.
            expired = [self._leases.pop(n) for n, lease in list(self._leases.items()) if lease.expires <= now]
            for candidate in candidates:
                lease = self._leases.get(self._names(candidate))
                if lease is None:
                    continue
                demands = candidate.demands
                if lease.key_id == candidate.key_id and all(
                    left >= d.units for left, d in zip(lease.left, demands, strict=True)
                ):
                    lease.left = [left - d.units for left, d in zip(lease.left, demands, strict=True)]
                    held = tuple(replace(h, units=d.units) for h, d in zip(lease.held, demands, strict=True))
                    return Reservation(candidate.key_id, lease.start, 0.0, held), expired
        return None, expired

    def _give_back(self, leases: Sequence[_Lease]) -> None:
        for lease in leases:
            back = tuple(
                replace(h, units=left, tokens=True)
                for h, left in zip(lease.held, lease.left, strict=True)
                if left > 0 and h.interval is not None
            )
            if back:
                # Reconciling "tokens" used 0 of `left` moves each bucket back by what is unused.
                self.inner.reconcile(Reservation(lease.key_id, lease.start, 0.0, back), 0)

    def _lease_size(self, candidate: Candidate) -> int:
        size = self.size
        for d in candidate.demands:
            burst = _burst(d, self._seen.get(d.bucket))
            if burst is not None and d.units > 0:
                size = min(size, math.floor(burst / d.units))
        return size if _ttl(candidate.demands) > 0 else 1

    def reserve(self, candidates: Sequence[Candidate], max_wait_s: float) -> Reservation:
        now = self._clock()
        found, expired = self._from_lease(candidates, now)
        self._give_back(expired)
        if found is not None:
            return found
        first = candidates[0]
        names = self._names(first)
        size = self._lease_size(first)
        if size >= 2 and self._no_lease_until.get(names, 0.0) <= now:
            scaled = Candidate(first.key_id, tuple(replace(d, units=d.units * size) for d in first.demands))
            try:
                whole = self.inner.reserve([scaled], 0.0)
            except WaitTooLong:
                self._no_lease_until[names] = now + _BACKOFF_S
            else:
                return self._keep(first, whole, size, now)
        reservation = self.inner.reserve(candidates, max_wait_s)
        self._remember(reservation.held)
        return reservation

    def _keep(self, candidate: Candidate, whole: Reservation, size: int, now: float) -> Reservation:
        self._remember(whole.held)
        demands = candidate.demands
        held = tuple(replace(h, units=d.units) for h, d in zip(whole.held, demands, strict=True))
        # The reservation told what is in force: a limit learned since (by another process) may
        # make the lease larger than that burst allows; the excess goes back before any of it is used.
        kept = max(1, min(size, self._lease_size(candidate)))
        lease = _Lease(candidate.key_id, whole.start, held, [], 0.0)
        if kept < size:
            lease.left = [d.units * (size - kept) for d in demands]
            self._give_back([lease])
        lease.left, lease.expires = [d.units * (kept - 1) for d in demands], now + _ttl(demands)
        with self._lock:
            previous = self._leases.get(self._names(candidate))
            self._leases[self._names(candidate)] = lease
        if previous is not None:
            self._give_back([previous])
        return Reservation(candidate.key_id, whole.start, whole.wait_s, held)

    def _remember(self, held: Sequence[Held]) -> None:
        with self._lock:
            for h in held:
                self._seen[h.bucket] = h

    def _void(self, bucket: str) -> None:
        with self._lock:
            for names in [n for n in self._leases if bucket in n]:
                del self._leases[names]
            self._seen.pop(bucket, None)

    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        self.inner.reconcile(reservation, actual_tokens)

    def pause(self, bucket: str, seconds: float) -> None:
        self._void(bucket)
        self.inner.pause(bucket, seconds)

    def learn(self, bucket: str, limit: float, configured: float | None, source: str) -> None:
        self._void(bucket)
        self.inner.learn(bucket, limit, configured, source)
