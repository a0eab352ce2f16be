"""High-priority requests submitted behind a backlog of low ones on the same specialist start first."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app import client


@pytest.fixture
def slow_provider(faults: httpx.Client) -> Iterator[None]:
    faults.post("/admin/faults", json={"latency_ms": 300}).raise_for_status()
    yield
    faults.post("/admin/faults", json={"latency_ms": 0}).raise_for_status()


def test_high_priority_overtakes_a_low_priority_backlog(workers: object, slow_provider: None) -> None:
    text = "The API returns 500 errors when we call the orders endpoint"
    lows = [client.submit(f"{text} (batch job {i})", priority="low").id for i in range(40)]
    highs = [client.submit(f"{text} (production outage {i})", priority="high").id for i in range(3)]

    views = {rid: client.wait(rid, timeout=180) for rid in lows + highs}
    assert all(v.status == "succeeded" for v in views.values())
    started = sorted(views, key=lambda rid: views[rid].started_at)  # type: ignore[arg-type,return-value]
    # The pool takes 8 at a time (8 threads, prefetch 1 each), so up to 8 lows are already taken
    # when the highs arrive; every high must start before the rest of the backlog.
    ranks = [started.index(h) for h in highs]
    lows_started_before_highs = sum(1 for rid in started[: max(ranks)] if rid in lows)
    assert lows_started_before_highs <= 8 + 4, f"high requests started at ranks {ranks} of {len(started)}"
