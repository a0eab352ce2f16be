"""Observability on real workers: Prometheus metrics with their labels, the report against the
record, the bottleneck named for a slow provider and for a starved pool, JSON logs that follow
one request across processes."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import conftest as root
from tests.integration.conftest import METRICS_PORTS, run_cli

BILLING_TEXT = "I was charged twice for invoice INV-1042 this month, please refund the duplicate ({})"
TECHNICAL_TEXT = "Our webhook deliveries fail with HTTP 500 since this morning, request id {}"


def _scrape(port: int) -> dict[str, list[Any]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def _submit_and_wait(texts: list[str], tenant: str = "default", timeout: float = 120) -> list[Any]:
    from app.ingress import client

    ids = [client.submit(t, tenant=tenant).id for t in texts]
    return [client.wait(i, timeout=timeout) for i in ids]


def _db_now() -> datetime:
    from sqlalchemy import func, select

    from app.state import session_scope

    with session_scope() as session:
        return session.scalar(select(func.now()))


def test_metrics_appear_with_their_labels_after_a_real_run(workers: object) -> None:
    tag = uuid.uuid4().hex[:6]
    views = _submit_and_wait([BILLING_TEXT.format(tag), TECHNICAL_TEXT.format(tag)], tenant="metrics-co")
    assert [v.status for v in views] == ["succeeded", "succeeded"]

    billing = _scrape(METRICS_PORTS["billing"])
    technical = _scrape(METRICS_PORTS["technical"])
    router = _scrape(METRICS_PORTS["router"])

    assert _value(billing, "switchboard_requests_total", specialist="billing", status="succeeded") >= 1
    assert _value(technical, "switchboard_requests_total", specialist="technical", status="succeeded") >= 1
    # Each pool counts only its own work.
    assert _value(billing, "switchboard_requests_total", specialist="technical") == 0
    methods = {s.labels["method"] for s in router["switchboard_routing_decisions_total"]}
    assert methods <= {"rule", "classifier", "llm", "fallback", "conversation"} and methods
    assert {s.labels["specialist"] for s in router["switchboard_routing_decisions_total"]} >= {
        "billing",
        "technical",
    }

    tokens = billing["switchboard_request_tokens_count"]
    assert tokens and all(
        s.labels["specialist"] == "billing" and s.labels["model"].startswith("sim-") for s in tokens
    )
    # No tenant label unless SWITCHBOARD_METRICS_TENANT_LABELS allows it: /metrics names no tenant.
    usage = tokens + billing["switchboard_request_cost_usd_sum"]
    assert all("tenant" not in s.labels for s in usage) and "metrics-co" not in str(usage)
    assert _value(billing, "switchboard_request_cost_usd_sum", specialist="billing") > 0
    assert _value(billing, "switchboard_llm_latency_seconds_count", outcome="ok") >= 2
    assert "switchboard_limiter_wait_seconds_count" in billing
    assert "switchboard_tool_calls_total" in billing or "switchboard_tool_calls_total" in technical

    # Fleet-wide gauges come from the router process: every queue and DLQ, read from the broker.
    depth = {s.labels["queue"]: s for s in router["switchboard_queue_depth"]}
    assert {"router", "billing", "technical", "billing.dlq", "technical.dlq"} <= set(depth)
    assert depth["billing.dlq"].labels["kind"] == "dead_letter" and depth["billing"].labels["kind"] == "work"
    assert _value(router, "switchboard_queue_consumers", queue="billing") >= 1
    assert "switchboard_breaker_state" not in billing  # only the router exports fleet state


def test_every_pools_metrics_listen_on_loopback_only(workers: object) -> None:
    """127.0.0.2 is this machine too, but a socket bound to 127.0.0.1 does not answer there; one
    bound to every address (0.0.0.0) would."""
    assert set(METRICS_PORTS) >= {"router", "billing", "technical"}
    for queue, port in METRICS_PORTS.items():
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200, queue
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5)


def test_dead_letters_and_retries_are_counted(workers: object) -> None:
    from app.ingress import client
    from app.ops.surge import POISON_TEXT

    before = _scrape(METRICS_PORTS["billing"])
    view = client.wait(client.submit(POISON_TEXT, tenant="acme").id, timeout=120)
    assert view.status == "dead_lettered" and view.specialist == "billing"
    after = _scrape(METRICS_PORTS["billing"])
    assert (
        _value(after, "switchboard_dead_letters_total", queue="billing")
        == _value(before, "switchboard_dead_letters_total", queue="billing") + 1
    )
    assert _value(after, "switchboard_requests_total", specialist="billing", status="dead_lettered") >= 1


def test_report_agrees_with_the_record(workers: object, tmp_path: Path) -> None:
    from sqlalchemy import func, select

    from app.ingress import client
    from app.observability.report import percentile
    from app.state import LlmCall, Request, session_scope

    since = _db_now()
    tag = uuid.uuid4().hex[:6]
    views = _submit_and_wait(
        [BILLING_TEXT.format(f"{tag}-{i}") for i in range(3)]
        + [TECHNICAL_TEXT.format(f"{tag}-{i}") for i in range(3)],
        tenant="report-co",
    )
    html = tmp_path / "report.html"
    result = run_cli("report", "--since", since.isoformat(), "--json", "--html", str(html))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    ids = [v.id for v in views]
    with session_scope() as session:
        rows = session.execute(select(Request).where(Request.accepted_at >= since)).scalars().all()
        by_spec = session.execute(
            select(
                Request.specialist,
                func.count(),
                func.sum(Request.prompt_tokens + Request.completion_tokens),
                func.sum(Request.cost_usd),
            )
            .where(Request.accepted_at >= since)
            .group_by(Request.specialist)
        ).all()
        cache_hits = session.scalar(
            select(func.count())
            .select_from(LlmCall)
            .join(Request)
            .where(Request.accepted_at >= since, LlmCall.cache_hit.is_(True))
        )
    assert {r.id for r in rows} >= set(ids)
    assert report["requests"] == len(rows)
    assert report["succeeded"] == sum(1 for r in rows if r.status == "succeeded")
    for specialist, count, tokens, cost in by_spec:
        mine = report["by_specialist"][specialist]
        assert (mine["requests"], mine["tokens"]) == (count, tokens)
        assert Decimal(str(mine["cost_usd"])) == cost.quantize(Decimal("0.000001"))
    assert report["by_tenant"]["report-co"]["requests"] == 6
    assert report["cache_hits"] == cache_hits

    # Stage percentiles are those of the per-request timings `switchboard status` shows.
    statuses = [client.get(r.id).timings for r in rows if r.status == "succeeded"]
    for stage in (
        "queued_for_router",
        "routing",
        "queued_for_specialist",
        "end_to_end",
        "llm",
        "database",
        "step.draft",
    ):
        values = [t[stage] for t in statuses if t.get(stage) is not None]
        assert report["stages"][stage]["p50"] == percentile(values, 50), stage
        assert report["stages"][stage]["p95"] == percentile(values, 95), stage
    assert all(t["llm"] > 0 and t["database"] > 0 and t["routing"] is not None for t in statuses)
    assert report["bottleneck"]["stage"] in report["bottleneck"]["shares"]
    assert report["routed_without_llm"] is not None and 0 <= report["routed_without_llm"] <= 1

    page = html.read_text()
    assert report["html"] == str(html.resolve())
    assert page.count("<svg") >= 4 and "Latency per stage" in page and "Cost per specialist" in page
    # Self-contained: no scripts, nothing fetched.
    assert "<script" not in page and "src=" not in page and "<link" not in page


def test_report_refuses_a_bad_since(services: object) -> None:
    result = run_cli("report", "--since", "last tuesday", "--json")
    assert result.returncode == 2
    assert "--since" in json.loads(result.stdout)["error"]


@contextmanager
def _isolated_pools(
    tmp_path: Path, queues: list[str], settings: dict[str, str], simulator_args: tuple[str, ...] = ()
) -> Iterator[None]:
    """Pools, a simulated provider and a publisher of their own on a fresh vhost (same database),
    so the session's pools cannot take this scenario's messages."""
    from app.config import get_settings, reset_settings
    from app.ops.pools import pool_specs, simulator_spec
    from app.ops.supervisor import Supervisor, wait_for_workers, wait_http
    from app.orchestration.celery_app import use_broker
    from tests.support.services import scratch_vhost

    assert root.SERVICES is not None
    saved = dict(os.environ)
    old_broker = get_settings().broker_url.get_secret_value()
    port = root._free_port()
    with scratch_vhost(
        "amqp://guest:guest@127.0.0.1:5672//", f"{root.SERVICES.vhost}-{uuid.uuid4().hex[:6]}"
    ) as broker:
        try:
            os.environ.update(
                {
                    "SWITCHBOARD_BROKER_URL": broker,
                    "SWITCHBOARD_SIMULATOR_PORT": str(port),
                    "SWITCHBOARD_PROVIDER_BASE_URL": f"http://127.0.0.1:{port}/v1",
                    **{
                        f"SWITCHBOARD_{q.upper()}_METRICS_PORT": "0"
                        for q in ("router", "billing", "technical")
                    },
                    **settings,
                }
            )
            reset_settings()
            use_broker(broker)
            with Supervisor(tmp_path / "logs", restart=False) as sup:
                sup.start(simulator_spec(None, *simulator_args))
                wait_http(f"http://127.0.0.1:{port}/healthz", 30)
                for spec in pool_specs(queues=queues):
                    sup.start(spec)
                wait_for_workers(queues, timeout=120)
                # Warm up (the router's classifier loads on its first request): the scenario
                # measures a pool at work, not a cold start.
                _submit_and_wait(_billing_tickets(1), tenant="warm-up", timeout=180)
                yield
        finally:
            os.environ.clear()
            os.environ.update(saved)
            reset_settings()
            use_broker(old_broker)


def _billing_tickets(n: int) -> list[str]:
    from app.ops.surge import monday_morning
    from app.state import session_scope
    from specialists.billing.seed import account_emails, invoice_ids

    with session_scope() as session:
        emails, invoices = account_emails(session), invoice_ids(session)
    tickets = [
        t.text for t in monday_morning(n * 4, emails=emails, invoice_ids=invoices) if t.expected == "billing"
    ]
    assert len(tickets) >= n
    return tickets[:n]


def _report_since(since: datetime) -> dict[str, Any]:
    result = run_cli("report", "--since", (since - timedelta(milliseconds=1)).isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_slow_provider_is_named_llm_bound(services: object, tmp_path: Path) -> None:
    with _isolated_pools(
        tmp_path, ["router", "billing"], {"SWITCHBOARD_BILLING_CONCURRENCY": "8"}, ("--latency-ms", "700")
    ):
        since = _db_now()
        views = _submit_and_wait(_billing_tickets(6), tenant="slow-llm", timeout=180)
    assert {v.status for v in views} == {"succeeded"}
    report = _report_since(since)
    assert report["requests"] == 6
    assert report["bottleneck"]["verdict"] == "LLM-bound", report["bottleneck"]
    assert report["bottleneck"]["stage"] == "llm"
    assert report["by_specialist"]["billing"]["bottleneck"]["kind"] == "llm"


def test_a_starved_pool_is_named_queue_bound(services: object, tmp_path: Path) -> None:
    with _isolated_pools(tmp_path, ["router", "billing"], {"SWITCHBOARD_BILLING_CONCURRENCY": "1"}):
        since = _db_now()
        views = _submit_and_wait(_billing_tickets(14), tenant="starved", timeout=240)
    assert {v.status for v in views} == {"succeeded"}
    report = _report_since(since)
    assert report["requests"] == 14
    bottleneck = report["bottleneck"]
    assert bottleneck["verdict"] == "queue-bound", bottleneck
    assert (bottleneck["stage"], bottleneck["where"]) == ("queued_for_specialist", "billing"), bottleneck
    waiting = max(p["waiting_for_specialist"].get("billing", 0) for p in report["timeline"])
    assert waiting >= 5  # the backlog shows in the queue-depth timeline


def test_json_logs_follow_one_request_across_processes(workers: Any) -> None:
    from app.ingress import client
    from app.observability.logs import JsonFormatter, RequestIdFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("client"))
    handler.addFilter(RequestIdFilter())
    ingress = logging.getLogger("app.ingress.client")
    ingress.addHandler(handler)
    ingress.setLevel(logging.INFO)
    try:
        view = client.wait(client.submit(BILLING_TEXT.format(uuid.uuid4().hex[:6])).id, timeout=120)
    finally:
        ingress.removeHandler(handler)
    assert view.status == "succeeded"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(entry["request_id"] == view.id and entry["message"] == "accepted" for entry in lines)

    mine: dict[str, list[dict[str, Any]]] = {}
    for queue in ("router", "billing"):
        for line in workers.log_path(queue).read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # Celery's start-up banner is not a log line
            if entry.get("request_id") == view.id:
                mine.setdefault(queue, []).append(entry)
    assert {e["process"] for e in mine["router"]} == {"router"}
    assert any("routed to billing" in e["message"] for e in mine["router"])
    assert any("succeeded" in e["message"] for e in mine["billing"])
    assert all(e["ts"] and e["level"] for e in mine["router"] + mine["billing"])
    # Lines from the task's own thread also name the Celery task.
    assert all(e.get("task_id") for e in mine["router"] if "routed to" in e["message"])


def test_a_prefork_pool_serves_the_samples_of_all_its_children(services: object, tmp_path: Path) -> None:
    port = root._free_port()
    settings = {
        "SWITCHBOARD_SPECIALIST_POOL": "prefork",
        "SWITCHBOARD_BILLING_CONCURRENCY": "3",
        "SWITCHBOARD_ROUTER_CONCURRENCY": "2",
        "SWITCHBOARD_BILLING_METRICS_PORT": str(port),
    }
    with _isolated_pools(tmp_path, ["router", "billing"], settings):
        views = _submit_and_wait(_billing_tickets(6), tenant="prefork-co", timeout=180)
        samples = _scrape(port)
    assert {v.status for v in views} == {"succeeded"}
    # Each child counts in its own process; the parent's endpoint must add them all up (six
    # requests and the warm-up), which only prometheus_client's multiprocess mode does.
    assert _value(samples, "switchboard_requests_total", specialist="billing", status="succeeded") == 7
    assert _value(samples, "switchboard_request_tokens_count", specialist="billing") >= 6


def test_breaker_state_is_read_from_the_shared_record_at_scrape_time(workers: object) -> None:
    from sqlalchemy import delete

    from app.state import CircuitBreaker, session_scope

    target = f"breaker-test-{uuid.uuid4().hex[:6]}/sim-none"
    with session_scope() as session:
        session.add(CircuitBreaker(target=target, state="open"))
    try:
        assert _value(_scrape(METRICS_PORTS["router"]), "switchboard_breaker_state", target=target) == 2
        with session_scope() as session:
            session.get(CircuitBreaker, target).state = "half_open"
        assert _value(_scrape(METRICS_PORTS["router"]), "switchboard_breaker_state", target=target) == 1
    finally:
        with session_scope() as session:
            session.execute(delete(CircuitBreaker).where(CircuitBreaker.target == target))
