"""On a run the provider's rate limit binds (workers of this test's own, 60 requests a minute), the
report's verdict names the limit, not the pool, and agrees with what the autoscaler decides for that
queue on the same record: more workers would only wait on the limiter."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.config import get_settings, reset_settings
from app.ingress import client
from app.ops import autoscaler
from app.state import session_scope
from tests.integration.conftest import own_pools, run_cli, wait_all

TECHNICAL = "Our export job fails with a 502 error on the orders endpoint (limited {})"
RPM = 60
THREADS = 2


@pytest.fixture
def limited_pools(private_broker: str, provider_latency: Callable[[int], None], tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_RPM", str(RPM))
    monkeypatch.setenv("SWITCHBOARD_TECHNICAL_CONCURRENCY", str(THREADS))
    reset_settings()
    provider_latency(50)
    with own_pools(tmp_path, ["router", "technical"]):
        yield
    reset_settings()


def test_the_report_says_the_provider_limit_binds_as_the_autoscaler_does(limited_pools: None) -> None:
    since = datetime.now(UTC)
    ids = [client.submit(TECHNICAL.format(f"{since.timestamp()}-{i}")).id for i in range(16)]
    assert set(wait_all(ids, timeout=300).values()) == {"succeeded"}

    result = run_cli("report", "--since", since.isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)["by_specialist"]["technical"]["bottleneck"]
    # Requests waited longest in the queue, behind two workers that spent most of their running
    # time waiting on the limiter: the "queue-bound: add workers", which it is not.
    assert (verdict["stage"], verdict["where"]) == ("queued_for_specialist", "technical"), verdict
    assert verdict["kind"] == "rate_limit" and verdict["verdict"] == "rate-limit-bound", verdict
    assert "raise the provider limits, add API keys or cut tokens" in verdict["advice"]
    shares = verdict["running_shares"]
    assert max(shares, key=shares.get) == "limiter_wait", shares
    assert "more workers would only add contention" in verdict["because"]

    # The autoscaler's decision on the same record, for the backlog this run had: hold at the
    # rate-limit cap, whatever the queue wants.
    with session_scope() as session:
        cap = autoscaler.rate_cap(session, "technical", get_settings())
    assert cap is not None and cap.binding.endswith("rpm"), cap
    policy = autoscaler.Policy(min=1, max=64, target_pending=1.0, cooldown_s=0.0)
    decision = autoscaler.decide("technical", pending=len(ids), current=THREADS, policy=policy, cap=cap,
                                 since_change_s=None)
    assert decision.detail["wanted"] > cap.concurrency
    assert decision.desired == max(policy.min, cap.concurrency) <= THREADS, decision
    assert "rate limit" in decision.reason and "only wait on the limiter" in decision.reason
