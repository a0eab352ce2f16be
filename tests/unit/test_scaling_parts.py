"""Scaling pieces that need no services: the resizable threads pool, process layouts, the
autoscaler's decision, the policy and threshold settings, and the overload error."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.ingress.client import Overloaded, Refused
from app.observability.depth import _vhost_and_credentials
from app.ops.autoscaler import Cap, Policy, decide
from app.ops.pools import process_name, queue_of_node
from app.ops.scale import layout
from app.orchestration.thread_pool import TaskPool


def _peak_running(pool: TaskPool, jobs: int) -> int:
    """Submit `jobs` blocking jobs at once; how many ran at the same time."""
    lock, running, peak = threading.Lock(), [0], [0]

    def job() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    results = [pool.apply_async(job) for _ in range(jobs)]
    for r in results:
        r.wait(10)
    return peak[0]


def test_the_threads_pool_grows_and_shrinks_while_running() -> None:
    pool = TaskPool(limit=2)
    assert _peak_running(pool, 6) == 2
    pool.grow(3)
    assert pool.info["max-concurrency"] == 5 and pool.num_processes == 5
    assert _peak_running(pool, 10) == 5
    pool.shrink(4)
    assert pool.info["max-concurrency"] == 1
    assert _peak_running(pool, 3) == 1
    with pytest.raises(ValueError, match="at least 1 thread"):
        pool.shrink(1)
    pool.on_stop()


def test_a_resize_lets_running_tasks_finish() -> None:
    pool = TaskPool(limit=1)
    finished = threading.Event()
    pool.apply_async(lambda: (time.sleep(0.3), finished.set()))
    pool.grow(1)
    pool.on_stop()  # warm: waits for the task on the retired executor
    assert finished.is_set()


def test_layout_splits_a_total_over_as_few_processes_as_the_cap_allows() -> None:
    assert layout(10, 4) == [4, 3, 3]
    assert layout(4, 4) == [4]
    assert layout(1, 64) == [1]
    assert layout(0, 4) == []
    assert [process_name("billing", i) for i in range(3)] == ["billing", "billing-2", "billing-3"]
    assert queue_of_node("billing-2@host") == "billing" and queue_of_node("router@host") == "router"


POLICY = Policy(min=1, max=8, target_pending=10, cooldown_s=30)


def test_autoscaler_adds_capacity_past_the_target_pending_per_unit() -> None:
    d = decide("billing", pending=45, current=2, policy=POLICY, cap=None, since_change_s=None)
    assert (d.action, d.desired, d.applied) == ("up", 5, 5)
    d = decide("billing", pending=500, current=2, policy=POLICY, cap=None, since_change_s=None)
    assert (d.action, d.applied) == ("up", 8) and "policy range 1-8" in d.reason
    d = decide("billing", pending=0, current=5, policy=POLICY, cap=None, since_change_s=100)
    assert (d.action, d.applied) == ("down", 1)


def test_autoscaler_holds_in_cooldown_and_at_the_rate_limit() -> None:
    d = decide("billing", pending=0, current=5, policy=POLICY, cap=None, since_change_s=10)
    assert (d.action, d.applied, d.desired) == ("hold", 5, 1) and "cooldown" in d.reason
    cap = Cap(concurrency=3, feedable_rps=0.5, seconds_per_request=6.0, calls_per_request={"m": 3.0},
              tokens_per_request={"m": 900.0}, binding="m rpm")
    d = decide("billing", pending=80, current=2, policy=POLICY, cap=cap, since_change_s=None)
    assert (d.action, d.applied, d.limit_cap) == ("up", 3, 3)
    assert "rate limit (m rpm)" in d.reason and d.detail["wanted"] == 8
    d = decide("billing", pending=80, current=3, policy=POLICY, cap=cap, since_change_s=None)
    assert (d.action, d.applied) == ("hold", 3) and "rate limit" in d.reason


def test_policies_and_thresholds_come_from_settings() -> None:
    s = Settings(autoscale_policies="billing=2/16/5/60", degrade_thresholds="billing=10/40,*=100/400")
    assert s.autoscale_policies == {"billing": (2, 16, 5.0, 60.0)}
    assert s.degrade_thresholds == {"billing": (10, 40), "*": (100, 400)}
    for bad in ("billing=2/16", "billing=9/2/5/60", "billing=1/2/0/1"):
        with pytest.raises(ValidationError, match="autoscale policy"):
            Settings(autoscale_policies=bad)
    for bad in ("billing=10", "billing=40/10", "=1/2"):
        with pytest.raises(ValidationError, match="threshold"):
            Settings(degrade_thresholds=bad)


def test_overloaded_is_a_refusal_with_a_wait() -> None:
    exc = Overloaded("billing", waiting=420, threshold=400, estimated_wait_s=84.2)
    assert isinstance(exc, Refused) and exc.retry_after_s == 85
    assert str(exc).startswith("overloaded: 420 requests wait for the billing queue") and "about 84s" in str(exc)
    assert Overloaded("billing", 420, 400, None).retry_after_s == 60


def test_the_management_api_is_asked_about_the_brokers_own_vhost() -> None:
    assert _vhost_and_credentials("amqp://guest:guest@127.0.0.1:5672//")[1] == "/"
    assert _vhost_and_credentials("amqp://u:p%40ss@rabbit:5672/sb-test-1") == ("rabbit", "sb-test-1", "u", "p@ss")
