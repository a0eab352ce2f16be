"""The parts of observability that need no services: stage arithmetic, the bottleneck verdict,
--since parsing, log records, metrics ports."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from app.config import reset_settings
from app.observability.logs import JsonFormatter, RequestIdFilter
from app.observability.report import bottleneck, parse_since
from app.observability.timings import request_timings
from app.request_scope import bound, carry

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _row(
    specialist: str,
    *,
    router_wait: float,
    routing: float,
    specialist_wait: float,
    running: float,
    db_ms: float = 0.0,
) -> SimpleNamespace:
    route_started = T0 + timedelta(seconds=router_wait)
    routed = route_started + timedelta(seconds=routing)
    started = routed + timedelta(seconds=specialist_wait)
    return SimpleNamespace(
        specialist=specialist,
        accepted_at=T0,
        route_started_at=route_started,
        routed_at=routed,
        started_at=started,
        finished_at=started + timedelta(seconds=running),
        db_ms=db_ms,
    )


def test_stages_come_from_the_timestamps_and_the_parts_add_up() -> None:
    row = _row("billing", router_wait=0.5, routing=0.25, specialist_wait=2.0, running=4.0, db_ms=300)
    timing = request_timings(row, {"draft": 3.0}, llm_s=2.5, limiter_s=0.5)
    flat = timing.as_dict()
    assert (
        flat["queued_for_router"] == 0.5 and flat["routing"] == 0.25 and flat["queued_for_specialist"] == 2.0
    )
    assert flat["end_to_end"] == 6.75 and flat["step.draft"] == 3.0 and flat["database"] == 0.3
    parts = timing.parts
    assert parts["other_work"] == pytest.approx(0.25 + 4.0 - 2.5 - 0.5 - 0.3)
    assert sum(parts.values()) == pytest.approx(6.75)


def test_a_request_not_yet_routed_has_no_later_stages() -> None:
    row = SimpleNamespace(
        accepted_at=T0, route_started_at=None, routed_at=None, started_at=None, finished_at=None, db_ms=0.0
    )
    flat = request_timings(row, {}, 0.0, 0.0).as_dict()
    assert flat["queued_for_router"] is None and flat["end_to_end"] is None


def test_the_bottleneck_is_the_largest_share_of_time() -> None:
    slow_llm = [
        (
            r := _row("billing", router_wait=0.1, routing=0.05, specialist_wait=0.2, running=5.0),
            request_timings(r, {}, llm_s=4.5, limiter_s=0.0),
        )
        for _ in range(5)
    ]
    verdict = bottleneck(slow_llm)
    assert verdict is not None and (verdict.verdict, verdict.stage, verdict.where) == (
        "LLM-bound",
        "llm",
        None,
    )

    starved = [
        (
            r := _row("billing", router_wait=0.1, routing=0.05, specialist_wait=8.0, running=1.0),
            request_timings(r, {}, llm_s=0.5, limiter_s=0.0),
        )
        for _ in range(4)
    ]
    starved += [
        (
            r := _row("technical", router_wait=0.1, routing=0.05, specialist_wait=0.1, running=1.0),
            request_timings(r, {}, llm_s=0.5, limiter_s=0.0),
        )
    ]
    verdict = bottleneck(starved)
    assert verdict is not None
    assert (verdict.verdict, verdict.stage, verdict.where) == (
        "queue-bound",
        "queued_for_specialist",
        "billing",
    )
    assert sum(verdict.shares.values()) == pytest.approx(1.0, abs=1e-3)
    # Its workers' running time is the LLM's, not the limiter's: more workers do help here.
    assert verdict.running_shares is not None and verdict.running_shares["limiter_wait"] == 0.0
    assert verdict.because is None and "add workers" in verdict.advice


def test_a_queue_behind_workers_waiting_on_the_limiter_is_rate_limit_bound() -> None:
    # The run: requests queue for billing, and its workers spend 2.4 s of 2.9 s running
    # waiting on the limiter. Adding workers there only adds contention: the provider's limit binds.
    limited = [
        (
            r := _row("billing", router_wait=0.1, routing=0.05, specialist_wait=6.0, running=2.9),
            request_timings(r, {}, llm_s=0.3, limiter_s=2.4),
        )
        for _ in range(4)
    ]
    verdict = bottleneck(limited)
    assert verdict is not None
    assert (verdict.verdict, verdict.kind, verdict.stage, verdict.where) == (
        "rate-limit-bound", "rate_limit", "queued_for_specialist", "billing")
    assert verdict.running_shares is not None and verdict.running_shares["limiter_wait"] > 0.8
    assert "raise the provider limits, add API keys or cut tokens" in verdict.advice
    assert verdict.because is not None and "more workers would only add contention" in verdict.because


def test_nothing_finished_names_no_bottleneck() -> None:
    row = SimpleNamespace(
        accepted_at=T0, route_started_at=None, routed_at=None, started_at=None, finished_at=None, db_ms=0.0
    )
    assert bottleneck([(row, request_timings(row, {}, 0.0, 0.0))]) is None


def test_since_takes_durations_and_timestamps() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("2026-11-25T10:00:00", now) == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_since("2026-11-25T10:00:00+01:00", now).utcoffset() == timedelta(hours=1)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday-ish", now)


def _format(record: logging.LogRecord) -> dict[str, object]:
    RequestIdFilter().filter(record)
    return json.loads(JsonFormatter("billing").format(record))


def test_log_lines_carry_the_request_being_worked_on_even_in_step_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def line() -> dict[str, object]:
        return _format(
            logging.LogRecord("app.orchestration.tasks", logging.INFO, __file__, 1, "step %s done", ("draft",), None)
        )

    with bound("req-123"), ThreadPoolExecutor(1) as pool:
        here = line()
        there = pool.submit(carry(line)).result()
        bare = pool.submit(line).result()
    assert here["request_id"] == there["request_id"] == "req-123"
    assert bare["request_id"] is None  # a thread the task did not hand its request to
    assert here["message"] == "step draft done" and here["process"] == "billing" and here["level"] == "INFO"


def test_celerys_own_task_lines_name_the_request_from_the_task_arguments() -> None:
    record = logging.LogRecord("celery.worker.strategy", logging.INFO, __file__, 1, "Task received", (), None)
    record.data = {"id": "t-1", "name": "switchboard.specialist.billing", "args": "['req-9']", "kwargs": "{}"}
    entry = _format(record)
    assert entry["request_id"] == "req-9" and entry["data"]["id"] == "t-1"

    other = logging.LogRecord("celery.worker.strategy", logging.INFO, __file__, 1, "Task received", (), None)
    other.data = {"name": "switchboard.reconcile", "args": "[]"}
    assert _format(other)["request_id"] is None


def test_a_prefork_pool_sums_its_children_from_a_directory_of_its_own() -> None:
    from app.config import Settings
    from app.ops.pools import pool_env

    settings = Settings(metrics_base_port=9700)
    assert "PROMETHEUS_MULTIPROC_DIR" not in pool_env("billing", settings)  # threads: one process

    prefork = pool_env("billing", Settings(metrics_base_port=9700, specialist_pool="prefork"))
    assert (
        prefork["PROMETHEUS_MULTIPROC_DIR"]
        != pool_env("technical", Settings(specialist_pool="prefork"))["PROMETHEUS_MULTIPROC_DIR"]
    )


@pytest.fixture
def fresh_usage_histograms() -> Iterator[None]:
    """The usage histograms are built once per process from the settings: rebuilt for this test."""
    from prometheus_client import REGISTRY

    from app.observability import metrics

    def drop() -> None:
        for histogram in metrics.usage_histograms():
            REGISTRY.unregister(histogram)
        metrics.usage_histograms.cache_clear()

    drop()
    yield
    drop()
    reset_settings()


@pytest.mark.parametrize("allowed", [False, True])
def test_usage_metrics_carry_a_tenant_label_only_when_the_setting_allows(
        monkeypatch: pytest.MonkeyPatch, fresh_usage_histograms: None, allowed: bool) -> None:
    from prometheus_client import REGISTRY, generate_latest

    from app.observability import metrics

    monkeypatch.setenv("SWITCHBOARD_METRICS_TENANT_LABELS", str(allowed).lower())
    reset_settings()
    metrics.observe_request_usage("billing", "acme", {"sim-small": (120, Decimal("0.0001"))})
    lines = [line for line in generate_latest(REGISTRY).decode().splitlines()
             if line.startswith(("switchboard_request_tokens_count", "switchboard_request_cost_usd_count"))]
    assert len(lines) == 2
    assert all(('tenant="acme"' in line) is allowed for line in lines), lines
    assert all(("tenant=" in line) is allowed for line in lines)


@pytest.mark.parametrize("address, answers_elsewhere", [(None, False), ("0.0.0.0", True)])
def test_metrics_listen_on_loopback_unless_widened(
        monkeypatch: pytest.MonkeyPatch, address: str | None, answers_elsewhere: bool) -> None:
    """127.0.0.2 is this machine too; a socket bound to 127.0.0.1 does not answer there."""
    import socket

    import httpx

    from app.observability import metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if address:
        monkeypatch.setenv("SWITCHBOARD_METRICS_ADDRESS", address)
    else:
        monkeypatch.delenv("SWITCHBOARD_METRICS_ADDRESS", raising=False)
    reset_settings()
    try:
        assert metrics.serve(port, fleet=None) is not None
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
        try:
            elsewhere = httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5).status_code == 200
        except httpx.ConnectError:
            elsewhere = False
        assert elsewhere is answers_elsewhere
    finally:
        monkeypatch.undo()
        reset_settings()
