"""High-priority requests submitted behind a backlog of low ones on the same specialist start first."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from app.ingress import client
from app.orchestration.celery_app import celery


@pytest.fixture
def slow_provider(provider_latency: Callable[[int], None]) -> None:
    provider_latency(200)


@pytest.fixture
def paused_technical_pool(workers: object) -> Iterator[None]:
    """The technical pool stops taking messages, so a backlog builds up in its queue."""
    names = [name for reply in celery.control.ping(timeout=2.0) for name in reply if name.startswith("technical@")]
    assert names, "no technical worker answered"
    celery.control.cancel_consumer("technical", destination=names, reply=True)
    try:
        yield
    finally:
        celery.control.add_consumer("technical", destination=names, reply=True)


def test_high_priority_overtakes_a_low_priority_backlog(slow_provider: None, paused_technical_pool: None) -> None:
    text = "The API returns 500 errors when we call the orders endpoint"
    lows = [client.submit(f"{text} (batch job {i})", priority="low").id for i in range(40)]
    highs = [client.submit(f"{text} (production outage {i})", priority="high").id for i in range(3)]
    deadline = time.monotonic() + 60
    while any(client.get(rid).status != "routed" for rid in lows + highs):  # all waiting in the queue
        assert time.monotonic() < deadline, "requests were not routed"
        time.sleep(0.2)

    celery.control.add_consumer("technical", destination=[n for r in celery.control.ping(timeout=2.0)
                                                          for n in r if n.startswith("technical@")], reply=True)
    views = {rid: client.wait(rid, timeout=180) for rid in lows + highs}
    assert all(v.status == "succeeded" for v in views.values())
    started = sorted(views, key=lambda rid: views[rid].started_at)  # type: ignore[arg-type,return-value]
    # The pool takes 8 at a time (8 threads, prefetch 1 each): the highs are in its first wave.
    ranks = sorted(started.index(h) for h in highs)
    assert ranks[-1] < 8, f"high requests started at ranks {ranks} of {len(started)}"
