"""Fair share under a burst: another tenant's requests, submitted after one tenant's burst, finish
long before the burst drains (the burst beyond its share is dispatched at a lower priority)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app import client
from tests.integration.conftest import new_tenant

BURST = 60


@pytest.fixture
def slow_provider(faults: httpx.Client) -> Iterator[None]:
    # Each request makes several LLM calls: the billing pool, not the router, is the bottleneck.
    faults.post("/admin/faults", json={"latency_ms": 300}).raise_for_status()
    yield
    faults.post("/admin/faults", json={"latency_ms": 0}).raise_for_status()


def test_a_burst_from_one_tenant_does_not_starve_another(api: str, workers: object, slow_provider: None) -> None:
    noisy, noisy_key = new_tenant(max_concurrent=BURST)
    quiet, quiet_key = new_tenant()

    def post(token: str, text: str) -> str:
        answer = httpx.post(f"{api}/v1/requests", headers={"Authorization": f"Bearer {token}"},
                            json={"text": text}, timeout=30)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:  # a real burst: many callers at once
        burst = list(pool.map(lambda i: post(noisy_key, f"Please refund the duplicate charge on invoice INV-{2000 + i}"),
                              range(BURST)))
    print(f"burst of {BURST} submitted in {time.monotonic() - started:.1f}s")
    others = [post(quiet_key, f"Why was I charged twice for invoice INV-{3000 + i}?") for i in range(4)]

    views = {rid: client.wait(rid, timeout=300) for rid in burst + others}
    assert all(v.status == "succeeded" and v.specialist == "billing" for v in views.values())
    assert {views[r].tenant for r in burst} == {noisy} and {views[r].tenant for r in others} == {quiet}
    last_other = max(views[r].finished_at for r in others)  # type: ignore[type-var]
    burst_done_before = sum(1 for r in burst if views[r].finished_at <= last_other)  # type: ignore[operator]
    burst_end = max(views[r].finished_at for r in burst)  # type: ignore[type-var]
    first = min(v.accepted_at for v in views.values())
    print(f"the other tenant's last request finished when {burst_done_before}/{BURST} of the burst had, "
          f"{(last_other - first).total_seconds():.1f}s after the burst began; the burst drained after "
          f"{(burst_end - first).total_seconds():.1f}s")
    # Without fair share the other tenant waits for the whole burst (first in, first out).
    assert burst_done_before <= BURST // 2, f"{burst_done_before} of {BURST} burst requests finished first"
