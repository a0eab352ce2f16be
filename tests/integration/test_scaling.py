"""`switchboard scale` and `switchboard autoscale` on the session's real worker pools: concurrency
measured from the record (requests running at once), depth read from RabbitMQ."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from app.ingress import client
from app.observability.depth import depths
from app.orchestration.celery_app import celery
from app.state import ScalingDecision, session_scope
from tests.integration.conftest import peak_overlap, run_cli, wait_all, wait_until

TECHNICAL = "Our export job fails with a 502 error on the orders endpoint (job {})"
BILLING = "Please send me a copy of invoice INV-1042 for my records (copy {})"


def _scale(queue: str, n: int, env: dict[str, str] | None = None) -> dict:
    result = run_cli("scale", queue, str(n), "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _pools() -> dict[str, dict]:
    result = run_cli("pools", "--json")
    assert result.returncode == 0, result.stderr
    return {v["queue"]: v for v in json.loads(result.stdout)}


def _technical_nodes() -> list[str]:
    return [n for r in celery.control.ping(timeout=2.0) for n in r if n.startswith("technical@")]


@pytest.fixture
def slow_provider(provider_latency: Callable[[int], None]) -> None:
    provider_latency(400)


@pytest.fixture
def technical_restored(workers: object) -> Iterator[None]:
    """Whatever a test does to the technical pool, it is back at 8 threads, consuming, afterwards."""
    yield
    celery.control.add_consumer("technical", destination=_technical_nodes(), reply=True)
    _scale("technical", 8)


def test_scale_changes_the_measured_concurrency_of_that_pool_only(slow_provider: None,
                                                                   technical_restored: None) -> None:
    report = _scale("technical", 3)
    assert (report["before"], report["after"], report["via"]) == (8, 3, "remote-control")
    assert [c["after"] for c in report["changes"]] == [3]
    pools = _pools()
    assert pools["technical"]["concurrency"] == 3 and pools["billing"]["concurrency"] == 8

    technical = [client.submit(TECHNICAL.format(i)).id for i in range(9)]
    billing = [client.submit(BILLING.format(i)).id for i in range(8)]
    assert set(wait_all(technical + billing).values()) == {"succeeded"}
    assert peak_overlap(technical) == 3
    assert peak_overlap(billing) > 3  # the billing pool kept its 8 threads

    report = _scale("technical", 6)
    assert (report["before"], report["after"]) == (3, 6)
    more = [client.submit(TECHNICAL.format(f"again {i}")).id for i in range(12)]
    assert set(wait_all(more).values()) == {"succeeded"}
    assert 3 < peak_overlap(more) <= 6


def test_scale_refuses_unknown_queues_and_negative_sizes(workers: object) -> None:
    for args, message in [(["nosuch", "2"], "unknown queue 'nosuch'"),
                          (["billing.dlq", "2"], "unknown queue 'billing.dlq' (billing is its work queue)"),
                          (["billing", "-1"], "must be 0 or more")]:
        result = run_cli("scale", *args, "--json")
        assert result.returncode == 2, result.stderr
        assert message in json.loads(result.stdout)["error"]
    assert _pools()["billing"]["concurrency"] == 8


def test_pools_reports_unacked_depth_source_and_oldest_waiting(workers: object,
                                                             technical_restored: None) -> None:
    base = _pools()["technical"]["waiting"]  # what other tests left waiting in the session's record
    celery.control.cancel_consumer("technical", destination=_technical_nodes(), reply=True)
    ids = [client.submit(TECHNICAL.format(f"waiting {i}")).id for i in range(3)]
    wait_until(lambda: all(client.get(i).status == "routed" for i in ids), 60, "routing")
    wait_until(lambda: (_pools()["technical"]["ready"] or 0) >= 3, 30, "the management API's figures")
    technical = _pools()["technical"]
    assert technical["depth_source"] == "management"
    assert technical["unacked"] == 0 and technical["waiting"] == base + 3
    assert technical["oldest_waiting_s"] is not None and technical["oldest_waiting_s"] >= 0
    statuses = [json.loads(run_cli("status", i, "--json").stdout) for i in ids]
    assert {s["status"] for s in statuses} == {"routed"}
    positions = sorted(s["queue_position"] for s in statuses)
    assert positions == list(range(positions[0], positions[0] + 3))  # one behind the other
    celery.control.add_consumer("technical", destination=_technical_nodes(), reply=True)
    assert set(wait_all(ids).values()) == {"succeeded"}


def _autoscale(env: dict[str, str]) -> dict:
    result = run_cli("autoscale", "--once", "--queues", "technical", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    [decision] = json.loads(result.stdout)
    return decision


def _backlog(n: int, label: str) -> list[str]:
    """n technical requests behind a pool of 1 thread and a slow provider, as the broker reports them."""
    ids = [client.submit(TECHNICAL.format(f"{label} {i}")).id for i in range(n)]

    def queued() -> bool:
        d = depths(["technical"]).queues["technical"]
        return d is not None and d.ready + (d.unacked or 0) >= n - 1

    wait_until(queued, 60, "the broker's figures")
    return ids


def _drained() -> bool:
    d = depths(["technical"]).queues["technical"]
    return d is not None and d.ready + (d.unacked or 0) == 0


@pytest.fixture
def very_slow_provider(provider_latency: Callable[[int], None]) -> None:
    provider_latency(2000)


def test_autoscaler_follows_the_backlog_and_holds_where_the_rate_limit_binds(
        very_slow_provider: None, technical_restored: None) -> None:
    env = {"SWITCHBOARD_AUTOSCALE_POLICIES": "technical=1/6/2/0"}
    _scale("technical", 1)

    ids = _backlog(10, "backlog")
    up = _autoscale(env)
    assert (up["action"], up["current"]) == ("up", 1), up
    assert up["pending"] >= 8 and up["applied"] == math.ceil(up["pending"] / 2)
    assert up["limit_cap"] is None  # no provider limit configured
    assert _pools()["technical"]["concurrency"] == up["applied"]
    assert set(wait_all(ids).values()) == {"succeeded"}
    wait_until(_drained, 30, "the broker to report the queue empty")

    down = _autoscale(env)
    assert (down["action"], down["current"], down["applied"]) == ("down", up["applied"], 1), down
    assert _pools()["technical"]["concurrency"] == 1

    # A backlog again, behind a provider allowing 6 requests a minute: one thread already uses
    # what the limiter can feed, so more threads would only wait on it.
    ids = _backlog(6, "limited")
    held = _autoscale({**env, "SWITCHBOARD_PROVIDER_RPM": "6"})
    assert (held["action"], held["current"], held["applied"]) == ("hold", 1, 1), held
    assert held["limit_cap"] == 1 and "rate limit" in held["reason"]
    assert held["detail"]["wanted"] >= 3
    assert _pools()["technical"]["concurrency"] == 1
    _scale("technical", 8)
    assert set(wait_all(ids).values()) == {"succeeded"}

    with session_scope() as session:
        recorded = session.execute(
            select(ScalingDecision.action, ScalingDecision.applied).where(ScalingDecision.queue == "technical")
            .order_by(ScalingDecision.id)
        ).all()
    assert [tuple(r) for r in recorded[-3:]] == [("up", up["applied"]), ("down", 1), ("hold", 1)]
