"""Prometheus metrics: what the engine did (counters, histograms) and what the broker and the shared
state hold now (read at scrape time). Names and labels are documented in the README.

Each process kind (router, one per specialist pool) serves its own port (SWITCHBOARD_METRICS_PORT,
set per pool by app/ops/pools.py). Specialist pools use Celery's threads pool, one process each; a
prefork pool runs with PROMETHEUS_MULTIPROC_DIR set, its children write their samples to files
there and the parent serves them all (prometheus_client's multiprocess mode). Queue depths and
breaker states are fleet-wide, so only the router process exports them, read when scraped. Every
endpoint listens on loopback unless SWITCHBOARD_METRICS_ADDRESS widens it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import func, select

from app.config import get_settings
from app.observability.depth import depths
from app.observability.spend import by_tenant_day, in_doubt
from app.state import CircuitBreaker, Request, session_scope
from app.state.models import WAITING_ON_PERSON

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "switchboard_requests",
    "Requests by specialist and the status a task left them in "
    "(succeeded, failed: a retry is scheduled, dead_lettered)",
    ["specialist", "status"],
)
ROUTING_DECISIONS = Counter(
    "switchboard_routing_decisions",
    "Routing decisions by method (rule, classifier, llm, fallback, conversation) and specialist",
    ["method", "specialist"],
)
TOKEN_BUCKETS = (100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000)
COST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


@lru_cache(maxsize=1)
def usage_histograms() -> tuple[Histogram, Histogram]:
    """Tokens and cost per succeeded attempt and model. A `tenant` label only with
    SWITCHBOARD_METRICS_TENANT_LABELS: otherwise /metrics neither names tenants nor grows a set
    of series with each one (`switchboard report` has the per-tenant figures)."""
    labels = ["specialist", "model"] + (["tenant"] if get_settings().metrics_tenant_labels else [])
    tokens = Histogram(
        "switchboard_request_tokens",
        "Tokens (prompt + completion) one specialist attempt spent on a request, per model",
        labels,
        buckets=TOKEN_BUCKETS,
    )
    cost = Histogram(
        "switchboard_request_cost_usd",
        "Cost in USD one specialist attempt spent on a request, per model",
        labels,
        buckets=COST_BUCKETS,
    )
    return tokens, cost


LLM_LATENCY = Histogram(
    "switchboard_llm_latency_seconds",
    "Provider call latency (cache hits excluded) by model, purpose and outcome",
    ["model", "purpose", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
LIMITER_WAIT = Histogram(
    "switchboard_limiter_wait_seconds",
    "Time a call waited for its shared rate-limit slot, by model",
    ["model"],
    buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
CACHE_HITS = Counter(
    "switchboard_llm_cache_hits", "LLM calls answered from the exact cache, by model", ["model"]
)
TOOL_CALLS = Counter(
    "switchboard_tool_calls", "Tool calls by tool and outcome (ok, error)", ["tool", "outcome"]
)
CONVERSATION_TURNS = Histogram(
    "switchboard_conversation_turns",
    "Turn number of each answered request in a conversation, by specialist",
    ["specialist"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
)
RETRIES = Counter(
    "switchboard_retries",
    "Task retries by queue and reason (failed: an attempt failed; deferred: the "
    "provider could not take it, no attempt spent)",
    ["queue", "reason"],
)
DEAD_LETTERS = Counter(
    "switchboard_dead_letters", "Requests dead-lettered, by the queue whose DLQ took them", ["queue"]
)

APPROVALS = Counter(
    "switchboard_approvals",
    "Tool calls that needed a person's approval, by tool and what happened (requested, approved, rejected)",
    ["tool", "decision"],
)
APPROVAL_ESCALATIONS = Counter(
    "switchboard_approval_escalations",
    "Approvals that waited past SWITCHBOARD_APPROVAL_DEADLINE_S and went to the human queue, by tool",
    ["tool"],
)
HANDOFFS = Counter(
    "switchboard_handoffs",
    "Requests handed to the human queue, by source (workflow, tool, approval_deadline, failure)",
    ["source"],
)
HUMAN_REPLIES = Counter("switchboard_human_replies", "Requests in the human queue answered by a person")

BUDGET_REFUSALS = Counter(
    "switchboard_budget_refusals",
    "LLM calls not made because a budget could not cover them, by scope (request, tenant_day)",
    ["scope"],
)

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


def observe_request_usage(specialist: str, tenant: str, usage: dict[str, tuple[int, Decimal]]) -> None:
    tokens_histogram, cost_histogram = usage_histograms()
    for model, (tokens, cost) in usage.items():
        labels = (specialist, model, tenant) if get_settings().metrics_tenant_labels else (specialist, model)
        tokens_histogram.labels(*labels).observe(tokens)
        cost_histogram.labels(*labels).observe(float(cost))


def observe_llm_call(row: dict[str, Any]) -> None:
    """One row as the gateway records it in llm_calls."""
    if row["cache_hit"]:
        CACHE_HITS.labels(row["model"]).inc()
        return
    LLM_LATENCY.labels(row["model"], row["purpose"], row["outcome"]).observe(row["latency_ms"] / 1000)
    LIMITER_WAIT.labels(row["model"]).observe(row["limiter_wait_ms"] / 1000)


class FleetCollector(Collector):
    """Queue depths from the broker, breaker states, today's LLM spend and requests waiting on
    people from PostgreSQL, read at scrape time.

    `queues` names the queues to read (work queues and DLQs): the orchestration layer knows the
    topology and passes it in, so metrics import nothing above them."""

    def __init__(self, queues: Callable[[], list[str]]) -> None:
        self._queues = queues

    def describe(self) -> list[GaugeMetricFamily]:
        # Without it, registering would collect once, talking to the broker during worker start.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "switchboard_queue_depth",
            "Ready messages per queue (work queues and DLQs), from the broker",
            labels=["queue", "kind"],
        )
        unacked = GaugeMetricFamily(
            "switchboard_queue_unacked",
            "Messages delivered to a worker and not yet acknowledged, per queue (management API only)",
            labels=["queue", "kind"],
        )
        consumers = GaugeMetricFamily(
            "switchboard_queue_consumers", "Consumers per queue, from the broker", labels=["queue", "kind"]
        )
        try:
            for queue, found in depths(self._queues()).queues.items():
                if found is not None:
                    kind = "dead_letter" if queue.endswith(".dlq") else "work"
                    depth.add_metric([queue, kind], found.ready)
                    consumers.add_metric([queue, kind], found.consumers)
                    if found.unacked is not None:
                        unacked.add_metric([queue, kind], found.unacked)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even while the broker is away
            log.warning("queue depths unavailable for metrics: %s", type(exc).__name__)
        yield depth
        yield unacked
        yield consumers
        yield self._breakers()
        yield self._waiting_on_people()
        yield from self._spend()

    @staticmethod
    def _spend() -> Iterator[GaugeMetricFamily]:
        # Per tenant only with SWITCHBOARD_METRICS_TENANT_LABELS, like the usage histograms.
        per_tenant = get_settings().metrics_tenant_labels
        spend = GaugeMetricFamily(
            "switchboard_llm_spend_today_usd",
            "LLM spend today (UTC), by state: spent (completed calls), in_flight (reserved by calls "
            "being made), in_doubt (estimated cost of calls whose process died)"
            + (", per tenant" if per_tenant else ", all tenants together"),
            labels=["state", "tenant"] if per_tenant else ["state"],
        )
        doubt_calls = GaugeMetricFamily(
            "switchboard_llm_calls_in_doubt", "LLM calls in doubt in the record (their process died mid-call)"
        )
        doubt_usd = GaugeMetricFamily(
            "switchboard_llm_in_doubt_usd", "Estimated cost of the LLM calls in doubt in the record"
        )
        try:
            with session_scope() as session:
                days = by_tenant_day(session, datetime.now(UTC).date())
                doubt = in_doubt(session)
            for state in ("spent", "in_flight", "in_doubt"):
                if per_tenant:
                    for day in days:
                        spend.add_metric([state, day.tenant], getattr(day, f"{state}_usd"))
                else:
                    spend.add_metric([state], round(sum(getattr(d, f"{state}_usd") for d in days), 6))
            doubt_calls.add_metric([], doubt.calls)
            doubt_usd.add_metric([], doubt.usd)
        except Exception as exc:  # noqa: BLE001 - one source failing must not fail the whole scrape
            log.warning("LLM spend unavailable for metrics: %s", type(exc).__name__)
        yield spend
        yield doubt_calls
        yield doubt_usd

    @staticmethod
    def _breakers() -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "switchboard_breaker_state",
            "Circuit state per provider/model target (0 closed, 1 half-open, 2 open), shared by the fleet",
            labels=["target"],
        )
        try:
            with session_scope() as session:
                for target, state in session.execute(select(CircuitBreaker.target, CircuitBreaker.state)):
                    family.add_metric([target], BREAKER_STATES.get(state, 0))
        except Exception as exc:  # noqa: BLE001 - one source failing must not fail the whole scrape
            log.warning("breaker states unavailable for metrics: %s", type(exc).__name__)
        return family

    @staticmethod
    def _waiting_on_people() -> GaugeMetricFamily:
        # Per tenant only with SWITCHBOARD_METRICS_TENANT_LABELS, like the usage histograms.
        per_tenant = get_settings().metrics_tenant_labels
        family = GaugeMetricFamily(
            "switchboard_requests_waiting_on_people",
            "Requests awaiting a person's approval or in the human queue, from the record",
            labels=["status", "tenant"] if per_tenant else ["status"],
        )
        group = (Request.status, Request.tenant) if per_tenant else (Request.status,)
        try:
            with session_scope() as session:
                waiting = select(*group, func.count()).where(Request.status.in_(list(WAITING_ON_PERSON)))
                for *labels, count in session.execute(waiting.group_by(*group)):
                    family.add_metric([str(v) for v in labels], count)
        except Exception as exc:  # noqa: BLE001 - one source failing must not fail the whole scrape
            log.warning("requests waiting on people unavailable for metrics: %s", type(exc).__name__)
        return family


def serve(
    port: int, *, fleet: Callable[[], list[str]] | None, address: str | None = None
) -> CollectorRegistry | None:
    """Serve this process's metrics on `port` (0: none) at `address` (default
    SWITCHBOARD_METRICS_ADDRESS, loopback); `fleet`: also the depths of the queues it names, the
    breakers, spend and requests waiting on people (the router process only)."""
    if port <= 0:
        return None
    address = address or get_settings().metrics_address
    registry: CollectorRegistry = REGISTRY
    multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        # Samples of a previous run would be summed into this one's.
        for stale in Path(multiproc_dir).glob("*.db"):
            stale.unlink()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    if fleet is not None:
        registry.register(FleetCollector(fleet))
    try:
        start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        # Metrics must never keep a pool from working.
        log.warning("metrics: cannot listen on port %d (%s); this process exports no metrics", port, exc)
        return None
    log.info("metrics on %s:%d/metrics", address, port)
    return registry


def process_exited(pid: int) -> None:
    """A prefork child exited: its live samples go (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
