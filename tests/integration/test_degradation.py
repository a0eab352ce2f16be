"""Graceful degradation at its thresholds, on real workers of this test's own (router and a
technical pool of 2 threads, in a private vhost): past the first, waiting work runs on the cheap
tier; past the second, `low` submissions are refused with an estimated wait; a waiting request's
status shows when it should start."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import reset_settings
from app.ingress import client
from app.orchestration.admission.degradation import reset as reset_degradation
from app.orchestration.celery_app import celery
from app.state import LlmCall, Request, session_scope
from tests.integration.conftest import own_pools, run_cli, wait_all, wait_until

TECHNICAL = "Our export job fails with a 502 error on the orders endpoint (job {})"


def _already_waiting() -> int:
    """Technical requests other tests left waiting in the session's record (their vhost is gone):
    the thresholds count from there."""
    from app.orchestration.admission.backlog import waiting

    with session_scope() as session:
        return waiting(session).get("technical", 0)


@pytest.fixture
def degrading_pools(private_broker: str, provider_latency: Callable[[int], None], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Workers of this test's own with technical thresholds of 3 and 6 more waiting requests than
    are waiting now; yields the number waiting now."""
    base = _already_waiting()
    monkeypatch.setenv("SWITCHBOARD_DEGRADE_THRESHOLDS", f"technical={base + 3}/{base + 6}")
    monkeypatch.setenv("SWITCHBOARD_TECHNICAL_CONCURRENCY", "2")
    reset_settings()
    reset_degradation()
    provider_latency(300)
    with own_pools(tmp_path, ["router", "technical"]):
        yield base
    reset_settings()
    reset_degradation()


def _nodes() -> list[str]:
    return [n for r in celery.control.ping(timeout=2.0) for n in r if n.startswith("technical@")]


def _draft_models(request_id: str) -> set[str]:
    with session_scope() as session:
        return set(session.scalars(select(LlmCall.model).where(LlmCall.request_id == request_id,
                                                               LlmCall.step == "draft")))


def test_degradation_at_its_thresholds(degrading_pools: int) -> None:
    base = degrading_pools
    # A drain rate to estimate from: two requests finish first (and run on the capable tier).
    warm = [client.submit(TECHNICAL.format(f"warm-up {i}")).id for i in range(2)]
    assert set(wait_all(warm).values()) == {"succeeded"}
    assert all(_draft_models(r) == {"sim-large"} for r in warm)

    celery.control.cancel_consumer("technical", destination=_nodes(), reply=True)
    backlog = [client.submit(TECHNICAL.format(i)).id for i in range(6)]
    wait_until(lambda: all(client.get(r).status == "routed" for r in backlog), 60, "routing")

    # Past the second threshold: a low request bound for technical is refused, nothing written.
    reset_degradation()
    with session_scope() as session:
        before = session.scalar(select(Request.id).order_by(Request.accepted_at.desc()).limit(1))
    with pytest.raises(client.Overloaded) as refused:
        client.submit(TECHNICAL.format("low"), priority="low")
    assert isinstance(refused.value, client.Refused)
    assert refused.value.queue == "technical"
    assert (refused.value.waiting, refused.value.threshold) == (base + 6, base + 6)
    assert refused.value.estimated_wait_s is not None and refused.value.estimated_wait_s > 0
    assert refused.value.retry_after_s >= refused.value.estimated_wait_s
    with session_scope() as session:
        assert session.scalar(select(Request.id).order_by(Request.accepted_at.desc()).limit(1)) == before

    cli = run_cli("submit", TECHNICAL.format("low via cli"), "--priority", "low", "--json")
    assert cli.returncode == 75, cli.stderr
    body = json.loads(cli.stdout)
    assert body["overloaded"] is True and body["queue"] == "technical" and body["retry_after_s"] >= 1
    assert "overloaded" in body["error"] and "estimated wait" in body["error"]

    # Normal priority is still accepted, and a waiting request says when it should start.
    normal = client.submit(TECHNICAL.format("normal"))
    wait_until(lambda: client.get(normal.id).status == "routed", 60, "routing")
    view = client.get(normal.id)
    assert view.queue_position is not None and view.queue_position >= 6  # the backlog is ahead of it
    assert view.estimated_wait_s is not None and view.estimated_start is not None
    assert view.estimated_start > view.accepted_at

    # Past the first threshold the waiting work runs on the cheap tier; once fewer than 3 more wait,
    # requests get the capable tier again.
    celery.control.add_consumer("technical", destination=_nodes(), reply=True)
    done = backlog + [normal.id]
    assert set(wait_all(done).values()) == {"succeeded"}
    by_start = sorted(done, key=lambda r: client.get(r).started_at)  # type: ignore[arg-type,return-value]
    assert _draft_models(by_start[0]) == {"sim-small"}
    assert _draft_models(by_start[-1]) == {"sim-large"}
    with session_scope() as session:
        tiers = set(session.scalars(select(LlmCall.tier).where(LlmCall.request_id == by_start[0])))
    assert tiers == {"cheap"}

    # Below the threshold again, low submissions are accepted.
    reset_degradation()
    low = client.submit(TECHNICAL.format("low later"), priority="low")
    assert wait_all([low.id]) == {low.id: "succeeded"}
