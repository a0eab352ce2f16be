"""The GCRA limiter's promises, on the in-memory backend with a clock the test moves."""

from __future__ import annotations

import itertools

import pytest

from app.inference.limiter import Candidate, Demand, MemoryLimiter, Rate, WaitTooLong
from app.simulator import max_in_window


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rpm(bucket: str, limit: int, headroom: float = 0.1) -> Demand:
    return Demand.of(bucket, 1, limit, headroom)


def tpm(bucket: str, limit: int | None, tokens: int, headroom: float = 0.1) -> Demand:
    return Demand.of(bucket, tokens, limit, headroom, tokens=True)


def one(key: str, *demands: Demand) -> list[Candidate]:
    return [Candidate(key, demands)]


@pytest.mark.parametrize("limit", [10, 100, 1000])
def test_no_60s_window_ever_exceeds_the_limit(limit: int) -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    call = one("k1", rpm("key:h/k1/rpm", limit))
    starts = [limiter.reserve(call, max_wait_s=1e9).start for _ in range(limit * 5)]
    assert max_in_window(sorted(starts), 60.0) <= limit
    # ...and the limiter does not leave the budget idle: 5 minutes' worth drains in about 5 / 0.9 min.
    burst = Rate.from_limit(limit, 0.1).burst  # type: ignore[union-attr]
    assert starts[-1] - starts[0] == pytest.approx((limit * 5 - burst) * 60 / (limit * 0.9), rel=0.02)


def test_refill_is_smooth_not_a_burst_at_the_window_edge() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    call = one("k1", rpm("key:h/k1/rpm", 60))
    starts = [limiter.reserve(call, 1e9).start for _ in range(200)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # After the small burst allowance, calls are evenly spaced at 60 / 54 s.
    assert all(g == pytest.approx(60 / 54) for g in gaps[10:])


def test_tokens_are_limited_too_and_reconciled_with_real_usage() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    call = one("k1", tpm("key:h/k1/tpm", 10_000, 4000))  # 9,000 tokens a minute
    first = limiter.reserve(call, 1e9)
    second = limiter.reserve(call, 1e9)
    assert second.start > first.start
    limiter.reconcile(first, 400)  # the call used far less than reserved: give it back
    third = limiter.reserve(call, 1e9)
    assert third.start - second.start < 4000 * 60 / 9000


def test_waiting_past_the_limit_reserves_nothing() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    call = one("k1", rpm("key:h/k1/rpm", 10))
    for _ in range(5):
        limiter.reserve(call, 1e9)
    with pytest.raises(WaitTooLong) as caught:
        limiter.reserve(call, max_wait_s=1.0)
    next_start = limiter.reserve(call, 1e9).start
    assert next_start - clock.now == pytest.approx(caught.value.wait_s)


def test_the_key_with_the_first_free_slot_is_chosen() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    keys = [Candidate("a", (rpm("key:h/a/rpm", 60),)), Candidate("b", (rpm("key:h/b/rpm", 60),))]
    chosen = [limiter.reserve(keys, 1e9).key_id for _ in range(20)]
    assert chosen.count("a") == chosen.count("b") == 10


def test_pause_stops_everyone_until_the_provider_allows() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limiter.pause("model:h/k1/m/rpm", 7.5)
    call = one("k1", rpm("key:h/k1/rpm", 1000), Demand.of("model:h/k1/m/rpm", 1, None, 0.1))
    assert limiter.reserve(call, 1e9).start == pytest.approx(clock.now + 7.5)


def test_no_limit_means_no_rate() -> None:
    assert Rate.from_limit(0, 0.1) is None


def test_the_account_limit_holds_across_models_while_each_model_keeps_its_own() -> None:
    # The key allows 40 a minute whatever the model; the capable model alone allows 10.
    clock = Clock()
    limiter = MemoryLimiter(clock)
    cheap = one("k", rpm("key:h/k/rpm", 40), rpm("model:h/k/cheap/rpm", 1000))
    capable = one("k", rpm("key:h/k/rpm", 40), rpm("model:h/k/capable/rpm", 10))
    starts: dict[str, list[float]] = {"cheap": [], "capable": []}
    for i in range(300):
        name = "capable" if i % 3 == 0 else "cheap"
        starts[name].append(limiter.reserve(capable if name == "capable" else cheap, 1e9).start)
    every = sorted(starts["cheap"] + starts["capable"])
    assert max_in_window(every, 60.0) <= 40
    assert max_in_window(sorted(starts["capable"]), 60.0) <= 10
    # Per-model buckets alone (today's behaviour) would have let each model have its own 40.
    alone = MemoryLimiter(clock)
    split = [alone.reserve(one("k", rpm(f"model:h/k/{m}/rpm", 40)), 1e9).start for m in ("a", "b") * 100]
    assert max_in_window(sorted(split), 60.0) > 40


def test_a_full_bucket_at_any_level_reserves_nothing_anywhere() -> None:
    clock = Clock()
    limiter, control = MemoryLimiter(clock), MemoryLimiter(clock)
    tight = rpm("model:h/k/m/rpm", 2)
    roomy = rpm("key:h/k/rpm", 100, headroom=0.01)  # a burst of one: every call moves its next slot
    for backend in (limiter, control):
        backend.reserve(one("k", tight, roomy), 1e9)
        backend.reserve(one("k", tight, roomy), 1e9)
    with pytest.raises(WaitTooLong):
        limiter.reserve(one("k", tight, roomy), max_wait_s=1.0)
    # The refused call took nothing from the roomy bucket: its next slot is the control's.
    assert limiter.reserve(one("k", roomy), 1e9).start == control.reserve(one("k", roomy), 1e9).start


def test_reconcile_corrects_every_token_bucket_the_call_drew_on() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    call = one("k", tpm("key:h/k/tpm", 9000, 3000), tpm("model:h/k/m/tpm", 6000, 3000))
    first = limiter.reserve(call, 1e9)
    limiter.reconcile(first, 300)
    # Both buckets got the unused 2,700 tokens back: each is empty again once 300 tokens' worth of
    # its own rate (8,100 and 5,400 a minute after headroom) has passed, not 3,000 tokens' worth.
    key_wait = limiter.reserve(one("k", tpm("key:h/k/tpm", 9000, 3000)), 1e9).wait_s
    model_wait = limiter.reserve(one("k", tpm("model:h/k/m/tpm", 6000, 3000)), 1e9).wait_s
    assert (key_wait, model_wait) == (pytest.approx(300 * 60 / 8100), pytest.approx(300 * 60 / 5400))


def test_a_learned_lower_limit_is_applied_and_a_higher_one_is_not() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    call = one("k", rpm("key:h/k/rpm", 100), Demand.of("model:h/k/m/rpm", 1, None, 0.1))
    limiter.learn("model:h/k/m/rpm", 10, None, "x-ratelimit-limit-requests: 10")
    starts = [limiter.reserve(call, 1e9).start for _ in range(30)]
    assert max_in_window(starts, 60.0) <= 10
    held = limiter.reserve(call, 1e9).bucket("model:h/k/m/rpm")
    assert held is not None and (held.limit, held.learned) == (10, 10)
    assert limiter.events == [("model:h/k/m/rpm", None, 10, None, "x-ratelimit-limit-requests: 10")]
    # A learned limit above the configured one changes nothing: the lower limit is in force.
    roomy = MemoryLimiter(clock)
    roomy.learn("key:h/k/rpm", 1000, 100, "higher")
    assert roomy.reserve(one("k", rpm("key:h/k/rpm", 100)), 1e9).held[0].limit == 100
