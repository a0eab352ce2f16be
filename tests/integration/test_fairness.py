"""Fair share under a burst: another tenant's requests, submitted after one tenant's burst, run long
before the burst drains (the burst beyond its share is dispatched at a lower priority).

The billing pool is paused while the burst and the other tenant's requests are routed, so the
backlog is built the same way however loaded the machine is; then the pool resumes and the order in
which requests start is what a user would see. bench/fairness.py measures the same with times."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.ingress import client
from app.orchestration.celery_app import celery
from tests.integration.conftest import new_tenant

BURST = 60


def _billing_workers() -> list[str]:
    names = [n for reply in celery.control.ping(timeout=2.0) for n in reply if n.startswith("billing@")]
    assert names, "no billing worker answered"
    return names


@pytest.fixture
def paused_billing_pool(workers: object) -> Iterator[None]:
    celery.control.cancel_consumer("billing", destination=_billing_workers(), reply=True)
    try:
        yield
    finally:
        celery.control.add_consumer("billing", destination=_billing_workers(), reply=True)


def test_a_burst_from_one_tenant_does_not_starve_another(api: str, paused_billing_pool: None) -> None:
    noisy, noisy_key = new_tenant(max_concurrent=BURST)
    quiet, quiet_key = new_tenant()

    def post(token: str, text: str) -> str:
        answer = httpx.post(f"{api}/v1/requests", headers={"Authorization": f"Bearer {token}"},
                            json={"text": text}, timeout=60)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    with ThreadPoolExecutor(8) as pool:  # a real burst: many callers at once
        burst = list(pool.map(lambda i: post(noisy_key, f"Please refund the duplicate charge on invoice INV-{2000 + i}"),
                              range(BURST)))
    others = [post(quiet_key, f"Why was I charged twice for invoice INV-{3000 + i}?") for i in range(4)]
    deadline = time.monotonic() + 120
    while any(client.get(rid).status != "routed" for rid in burst + others):  # all waiting for billing
        assert time.monotonic() < deadline, "requests were not routed"
        time.sleep(0.3)

    celery.control.add_consumer("billing", destination=_billing_workers(), reply=True)
    views = {rid: client.wait(rid, timeout=300) for rid in burst + others}
    assert all(v.status == "succeeded" and v.specialist == "billing" for v in views.values())
    assert {views[r].tenant for r in burst} == {noisy} and {views[r].tenant for r in others} == {quiet}
    started = sorted(views, key=lambda rid: views[rid].started_at)  # type: ignore[arg-type,return-value]
    ranks = sorted(started.index(r) for r in others)
    print(f"the other tenant's requests started at ranks {ranks} of {len(started)}")
    # The burst's first 8 (its share) keep their place; the other tenant goes next, not after 60.
    assert ranks[-1] < BURST // 4, f"the other tenant's requests started at ranks {ranks}"
