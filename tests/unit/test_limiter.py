"""The GCRA limiter's promises, on the in-memory backend with a clock the test moves."""

from __future__ import annotations

import pytest

from app.inference.limiter import KeyLimits, MemoryLimiter, Rate, WaitTooLong
from app.simulator import max_in_window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("limit", [10, 100, 1000])
def test_no_60s_window_ever_exceeds_the_limit(limit: int) -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    key = KeyLimits("k1", Rate.from_limit(limit, 0.1), None)
    starts = [limiter.reserve("h", "m", [key], 0, max_wait_s=1e9).start for _ in range(limit * 5)]
    assert max_in_window(sorted(starts), 60.0) <= limit
    # ...and the limiter does not leave the budget idle: 5 minutes' worth drains in about 5 / 0.9 min.
    assert starts[-1] - starts[0] == pytest.approx((limit * 5 - Rate.from_limit(limit, 0.1).burst) * 60 / (limit * 0.9),
                                                   rel=0.02)


def test_refill_is_smooth_not_a_burst_at_the_window_edge() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    key = KeyLimits("k1", Rate.from_limit(60, 0.1), None)
    starts = [limiter.reserve("h", "m", [key], 0, 1e9).start for _ in range(200)]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # After the small burst allowance, calls are evenly spaced at 60 / 54 s.
    assert all(g == pytest.approx(60 / 54) for g in gaps[10:])


def test_tokens_are_limited_too_and_reconciled_with_real_usage() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    key = KeyLimits("k1", None, Rate.from_limit(10_000, 0.1))  # 9,000 tokens a minute
    first = limiter.reserve("h", "m", [key], 4000, 1e9)
    second = limiter.reserve("h", "m", [key], 4000, 1e9)
    assert second.start > first.start
    limiter.reconcile(first, 400)  # the call used far less than reserved: give it back
    third = limiter.reserve("h", "m", [key], 4000, 1e9)
    assert third.start - second.start < 4000 * 60 / 9000


def test_waiting_past_the_limit_reserves_nothing() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    key = KeyLimits("k1", Rate.from_limit(10, 0.1), None)
    for _ in range(5):
        limiter.reserve("h", "m", [key], 0, 1e9)
    with pytest.raises(WaitTooLong) as caught:
        limiter.reserve("h", "m", [key], 0, max_wait_s=1.0)
    next_start = limiter.reserve("h", "m", [key], 0, 1e9).start
    assert next_start - clock.now == pytest.approx(caught.value.wait_s)


def test_the_key_with_the_first_free_slot_is_chosen() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    rate = Rate.from_limit(60, 0.1)
    keys = [KeyLimits("a", rate, None), KeyLimits("b", rate, None)]
    chosen = [limiter.reserve("h", "m", keys, 0, 1e9).key_id for _ in range(20)]
    assert chosen.count("a") == chosen.count("b") == 10


def test_pause_stops_everyone_until_the_provider_allows() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    key = KeyLimits("k1", Rate.from_limit(1000, 0.1), None)
    limiter.pause("h", "m", "k1", 7.5)
    assert limiter.reserve("h", "m", [key], 0, 1e9).start == pytest.approx(clock.now + 7.5)


def test_no_limit_means_no_rate() -> None:
    assert Rate.from_limit(0, 0.1) is None
