"""Circuit breaker transitions on the in-memory backend."""

from __future__ import annotations

import pytest

from app.inference.breaker import BreakerOpen, BreakerPolicy, MemoryBreaker
from app.inference.errors import FailureClass


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_probes_after_cooldown_and_closes_on_success() -> None:
    clock = Clock()
    breaker = MemoryBreaker(BreakerPolicy(consecutive=3, cooldown_s=10), clock)
    for _ in range(2):
        assert not breaker.on_failure(breaker.before_call("p/m"), FailureClass.SERVER)
    assert breaker.on_failure(breaker.before_call("p/m"), FailureClass.TIMEOUT)
    with pytest.raises(BreakerOpen) as caught:
        breaker.before_call("p/m")
    assert caught.value.retry_in_s == pytest.approx(10)

    clock.now = 10.0
    probe = breaker.before_call("p/m")
    assert probe.probe
    with pytest.raises(BreakerOpen):
        breaker.before_call("p/m")  # one probe at a time
    breaker.on_success(probe)
    assert breaker.state("p/m") == "closed"
    assert [t[1:3] for t in breaker.transitions] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_opens_again() -> None:
    clock = Clock()
    breaker = MemoryBreaker(BreakerPolicy(consecutive=1, cooldown_s=5), clock)
    breaker.on_failure(breaker.before_call("t"), FailureClass.SERVER)
    clock.now = 5.0
    assert breaker.on_failure(breaker.before_call("t"), FailureClass.CONNECTION)
    with pytest.raises(BreakerOpen):
        breaker.before_call("t")


def test_failure_rate_in_window_opens_without_a_streak() -> None:
    clock = Clock()
    breaker = MemoryBreaker(BreakerPolicy(consecutive=100, rate=0.5, window_s=30, min_calls=10), clock)
    opened = False
    for i in range(20):
        permit = breaker.before_call("t")
        if i % 2:
            opened = breaker.on_failure(permit, FailureClass.SERVER)
        else:
            breaker.on_success(permit)
        clock.now += 0.5
        if opened:
            break
    assert opened and breaker.state("t") == "open"


@pytest.mark.parametrize("kind", [FailureClass.RATE_LIMITED, FailureClass.BAD_REQUEST, FailureClass.AUTH])
def test_client_side_failures_do_not_count(kind: FailureClass) -> None:
    breaker = MemoryBreaker(BreakerPolicy(consecutive=1), Clock())
    assert not breaker.on_failure(breaker.before_call("t"), kind)
    assert breaker.state("t") == "closed"
