"""Leases on the limiter (app/inference/limiter_lease.py): fewer round trips, never over the limit."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from app.inference.limiter import Candidate, Demand, MemoryLimiter, Reservation, WaitTooLong
from app.inference.limiter_lease import LEASE_TTL_S, LeasingLimiter
from app.simulator import max_in_window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting(MemoryLimiter):
    """The shared backend, counting its round trips."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.reserves = 0

    def reserve(self, candidates: Sequence[Candidate], max_wait_s: float) -> Reservation:
        self.reserves += 1
        return super().reserve(candidates, max_wait_s)


def call(limit: int, tokens: int = 100, headroom: float = 0.1) -> list[Candidate]:
    return [
        Candidate(
            "k1",
            (
                Demand.of("key:h/k1/rpm", 1, limit, headroom),
                Demand.of("key:h/k1/tpm", tokens, 10**9, headroom, tokens=True),
            ),
        )
    ]


def test_a_process_serves_most_calls_from_its_lease() -> None:
    clock = Clock()
    shared = Counting(clock)
    limiter = LeasingLimiter(shared, 8, clock)
    for _ in range(80):
        assert limiter.reserve(call(100_000), 0.0).wait_s == 0.0
    assert shared.reserves == 10


@pytest.mark.parametrize("headroom", [0.05, 0.1, 0.3])
def test_processes_leasing_from_one_bucket_never_exceed_its_limit_in_any_window(headroom: float) -> None:
    clock = Clock()
    shared = MemoryLimiter(clock)
    fleet = [LeasingLimiter(shared, 8, clock) for _ in range(4)]
    limit, used = 600, []
    # Four processes call as fast as they are let, one each every 10 ms, for five minutes; what
    # each is given it uses at once.
    for tick in range(30_000):
        clock.now = 1000.0 + tick * 0.01
        try:
            fleet[tick % 4].reserve(call(limit, headroom=headroom), 0.0)
        except WaitTooLong:
            continue
        used.append(clock.now)
    assert max_in_window(used, 60.0) <= limit
    # ...and leases do not starve the fleet: it gets about the rate after headroom.
    assert len(used) >= limit * (1 - headroom) * 5 * 0.95


def test_what_a_lease_holds_goes_back_when_it_runs_out() -> None:
    clock = Clock()
    shared = MemoryLimiter(clock)
    one = LeasingLimiter(shared, 8, clock)
    # A burst of 10 (limit 200, headroom 10%): the process leases 8 and uses 1.
    one.reserve(call(200), 0.0)
    clock.now += LEASE_TTL_S + 0.01
    # Its next call, on another key's buckets, gives back the 7 it did not use...
    other_key = [Candidate("k2", (Demand.of("key:h/k2/rpm", 1, 200, 0.1),))]
    one.reserve(other_key, 0.0)
    # ...so another process finds the burst whole but for that one (and what refilled since).
    admitted = 0
    with pytest.raises(WaitTooLong):
        while True:
            shared.reserve(call(200), 1e-6)  # rounding aside
            admitted += 1
    assert admitted == 10


def test_no_lease_without_headroom_nor_larger_than_the_burst() -> None:
    clock = Clock()
    shared = Counting(clock)
    for _ in range(3):
        LeasingLimiter(shared, 8, clock).reserve(call(600, headroom=0.0), 1e9)
    assert shared.reserves == 3
    # limit 60, headroom 10%: a burst of 3 requests, so leases of 3.
    shared = Counting(clock)
    limiter = LeasingLimiter(shared, 8, clock)
    for _ in range(3):
        limiter.reserve(call(60), 0.0)
    assert shared.reserves == 1


def test_a_pause_voids_the_lease() -> None:
    clock = Clock()
    shared = MemoryLimiter(clock)
    limiter = LeasingLimiter(shared, 8, clock)
    limiter.reserve(call(100_000), 0.0)
    limiter.pause("key:h/k1/rpm", 5.0)
    with pytest.raises(WaitTooLong):
        limiter.reserve(call(100_000), 0.0)
