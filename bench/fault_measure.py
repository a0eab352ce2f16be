"""The child side of bench/faults.py: what a scenario counts at the end, from its own database and broker.

See bench/faults.py's docstring for what each count means.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app.orchestration.celery_app import celery
from app.orchestration.topology import dlq_name, work_queue_names
from bench.faults import TERMINAL


def measure(db_url: str, ids: list[str], sim_stats: dict[str, Any], broker_url: str,
            timeline_ids: list[str] | None = None) -> dict[str, Any]:
    """Counts for the scenario, from its private database (and its broker's dead-letter queues)."""

    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, attempts, specialist FROM requests WHERE id = ANY(:ids)"),
                                {"ids": ids}).all()
            one = lambda sql, **kw: conn.execute(text(sql), kw).scalar() or 0
            dup_deliveries = one("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM deliveries "
                                 "GROUP BY request_id HAVING count(*) > 1) x")
            dup_refunds_request = one("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM refunds "
                                      "GROUP BY request_id, invoice_id HAVING count(*) > 1) x")
            dup_refunds_invoice = one("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM refunds "
                                      "GROUP BY invoice_id HAVING count(*) > 1) x")
            # A paid call of a step that had already succeeded: written in another transaction than
            # the step's checkpoint (xmin), after the step finished.
            repaid = one(
                "SELECT count(*) FROM llm_calls c JOIN step_runs s ON s.request_id = c.request_id AND s.step = c.step "
                "WHERE s.status = 'succeeded' AND c.outcome = 'ok' AND NOT c.cache_hit "
                "AND NOT (c.xmin = s.xmin) AND c.created_at > s.finished_at"
            )
            repaid_requests = one(
                "SELECT count(DISTINCT c.request_id) FROM llm_calls c JOIN step_runs s ON s.request_id = c.request_id "
                "AND s.step = c.step WHERE s.status = 'succeeded' AND c.outcome = 'ok' AND NOT c.cache_hit "
                "AND NOT (c.xmin = s.xmin) AND c.created_at > s.finished_at"
            )
            recorded_ok = one("SELECT count(*) FROM llm_calls WHERE outcome IN ('ok', 'in_flight', 'in_doubt') "
                              "AND NOT cache_hit")
            in_doubt = conn.execute(text(
                "SELECT count(*), coalesce(sum(estimated_cost_usd), 0) FROM llm_calls "
                "WHERE outcome IN ('in_flight', 'in_doubt')")).one()
            refunds = one("SELECT count(*) FROM refunds")
            deliveries = one("SELECT count(*) FROM deliveries")
            missing_deliveries = one(
                "SELECT count(*) FROM requests r WHERE r.id = ANY(:ids) AND r.status = 'succeeded' "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.request_id = r.id)", ids=ids)
            dead_but_delivered = one(
                "SELECT count(*) FROM requests r WHERE r.id = ANY(:ids) AND r.status = 'dead_lettered' "
                "AND EXISTS (SELECT 1 FROM deliveries d WHERE d.request_id = r.id)", ids=ids)
            timelines = {
                rid: [k for (k,) in conn.execute(text(
                    "SELECT kind FROM request_events WHERE request_id = :id ORDER BY id"), {"id": rid}).all()]
                for rid in (timeline_ids or [])
            }
            runs = dict(conn.execute(text(
                "SELECT request_id, count(*) FROM request_events WHERE kind = 'attempt_started' "
                "AND request_id = ANY(:ids) GROUP BY request_id"), {"ids": ids}).all())
            events = dict(conn.execute(text(
                "SELECT kind, count(*) FROM request_events WHERE request_id = ANY(:ids) "
                "AND kind IN ('redispatched', 'deferred', 'attempt_failed', 'dead_lettered', 'replayed') "
                "GROUP BY kind"), {"ids": ids}).all())
            stuck = [
                {"id": r.id, "status": r.status, "specialist": r.specialist, "attempts": r.attempts,
                 "events": [f"{k}:{json.dumps(d)[:160]}" for k, d in conn.execute(text(
                     "SELECT kind, detail FROM request_events WHERE request_id = :id ORDER BY id"), {"id": r.id}).all()]}
                for r in rows if r.status not in TERMINAL
            ][:5]
    finally:
        engine.dispose()
    by_status = Counter(r.status for r in rows)
    found = {r.id for r in rows}
    missing = [i for i in ids if i not in found]
    lost = len(missing) + sum(n for s, n in by_status.items() if s not in TERMINAL)
    provider_ok = int(sim_stats.get("by_status", {}).get("200", 0))
    return {
        "succeeded": by_status.get("succeeded", 0),
        "dead_lettered": by_status.get("dead_lettered", 0),
        "waiting_on_person": by_status.get("awaiting_approval", 0) + by_status.get("needs_human", 0),
        "lost": lost,
        "non_terminal": {s: n for s, n in by_status.items() if s not in TERMINAL},
        "missing": len(missing),
        "duplicated_side_effects": int(dup_deliveries + dup_refunds_request + dup_refunds_invoice),
        "duplicates": {"deliveries_per_request": int(dup_deliveries),
                       "refunds_per_request_invoice": int(dup_refunds_request),
                       "refunds_per_invoice": int(dup_refunds_invoice)},
        "repaid_llm_calls": int(repaid),
        "repaid_llm_requests": int(repaid_requests),
        "unrecorded_llm_calls": max(0, provider_ok - int(recorded_ok)),
        "in_doubt_llm_calls": int(in_doubt[0]),
        "in_doubt_usd": float(in_doubt[1]),
        "provider_calls_ok": provider_ok,
        "provider_faults": sim_stats.get("faults_injected", {}),
        "refunds": int(refunds),
        "deliveries": int(deliveries),
        "missing_deliveries": int(missing_deliveries),
        "dead_lettered_but_delivered": int(dead_but_delivered),
        "requests_run_more_than_once": sum(1 for n in runs.values() if n > 1),
        "max_runs": max(runs.values(), default=0),
        "max_attempts": max((r.attempts for r in rows), default=0),
        "events": {k: int(v) for k, v in events.items()},
        "queues": queue_counts(broker_url),
        "stuck_examples": stuck,
        "_runs": runs,
        "_timelines": timelines,
        "_status": {r.id: r.status for r in rows},
    }


def queue_counts(broker_url: str) -> dict[str, Any] | str:
    """Ready messages (and consumers) per work queue and dead-letter queue at the end: a request
    whose message still sits in a work queue nobody consumes shows here."""
    try:
        counts: dict[str, Any] = {}
        with Connection(broker_url, connect_timeout=5) as conn:
            channel = conn.channel()
            for queue in work_queue_names():
                ok = channel.queue_declare(queue, passive=True)
                counts[queue] = {"ready": ok.message_count, "consumers": ok.consumer_count}
                counts[dlq_name(queue)] = channel.queue_declare(dlq_name(queue), passive=True).message_count
        return counts
    except Exception as exc:  # noqa: BLE001 - the broker may be down mid-fault: say so
        return f"unavailable: {type(exc).__name__}"


def worker_diagnostics() -> dict[str, Any] | str:
    """Each pool's own view at the end: its prefetch count and how many tasks it holds. A pool that
    holds nothing while its queue has ready messages has stopped consuming."""
    try:
        inspect = celery.control.inspect(timeout=2.0)
        stats, active, reserved = inspect.stats() or {}, inspect.active() or {}, inspect.reserved() or {}
        return {
            name.split("@", 1)[0]: {
                "prefetch_count": (stats.get(name) or {}).get("prefetch_count"),
                "active": len(active.get(name) or []),
                "reserved": len(reserved.get(name) or []),
            }
            for name in sorted(set(stats) | set(active) | set(reserved))
        }
    except Exception as exc:  # noqa: BLE001 - the workers may be down mid-fault: say so
        return f"unavailable: {type(exc).__name__}"


def httpx_get_json(url: str) -> dict[str, Any]:
    try:
        return httpx.get(url, timeout=5).json()
    except Exception:  # noqa: BLE001 - a missing figure, not a failed run
        return {}
