"""bench/pipeline.py's report: what the record says about a phase, the summary of all phases, the
table printed without --json, and the baseline's provider calls per request."""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any


def switchboard_record(conn: Any, tag: str) -> dict[str, Any]:
    """What the record says about one Switchboard phase: LLM calls, stages, steps, events."""
    q = conn.execute
    ids = "SELECT id FROM requests WHERE metadata->>'bench' = %s"
    n = q("SELECT count(*) FROM requests WHERE metadata->>'bench' = %s", (tag,)).fetchone()[0]
    # Provider calls are the rows that are not response-cache hits; the baseline mirrors those.
    calls, hits, latency, prompt = q(
        f"SELECT count(*) FILTER (WHERE NOT cache_hit), count(*) FILTER (WHERE cache_hit), "
        f"avg(latency_ms) FILTER (WHERE NOT cache_hit), avg(prompt_tokens) FILTER (WHERE NOT cache_hit) "
        f"FROM llm_calls WHERE request_id IN ({ids})", (tag,)
    ).fetchone()
    by_purpose = {
        purpose: round(count / n, 3)
        for purpose, count in q(
            f"SELECT purpose, count(*) FROM llm_calls WHERE NOT cache_hit AND request_id IN ({ids}) "
            f"GROUP BY 1 ORDER BY 1", (tag,)
        ).fetchall()
    }
    stages = q(
        """
        SELECT avg(extract(epoch FROM published_at - accepted_at)) * 1000,
               avg(extract(epoch FROM routed_at - published_at)) * 1000,
               avg(extract(epoch FROM started_at - routed_at)) * 1000,
               avg(extract(epoch FROM finished_at - started_at)) * 1000,
               avg(extract(epoch FROM finished_at - accepted_at)) * 1000,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - accepted_at)) * 1000,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - accepted_at)) * 1000,
               avg(attempts)
        FROM requests WHERE metadata->>'bench' = %s
        """,
        (tag,),
    ).fetchone()
    steps = {
        step: {"avg_ms": round(float(ms), 2), "per_request": round(count / n, 3)}
        for step, ms, count in q(
            f"SELECT step, avg(duration_ms), count(*) FROM step_runs WHERE request_id IN ({ids}) GROUP BY 1 ORDER BY 1",
            (tag,),
        ).fetchall()
    }
    events = q(f"SELECT count(*) FROM request_events WHERE request_id IN ({ids})", (tag,)).fetchone()[0]
    context = q(
        f"SELECT avg(least(length((output->'context')::text), 6000)) FROM step_runs "
        f"WHERE step = 'retrieve' AND request_id IN ({ids})",
        (tag,),
    ).fetchone()[0]
    routes = dict(q("SELECT route_method, count(*) FROM requests WHERE metadata->>'bench' = %s GROUP BY 1",
                    (tag,)).fetchall())
    names = ("accepted_to_published", "published_to_routed", "routed_to_started", "started_to_finished",
             "end_to_end_avg", "end_to_end_p50", "end_to_end_p95")
    return {
        "llm_calls_per_request": round(calls / n, 3),
        "llm_calls_by_purpose": by_purpose,
        "llm_cache_hits_per_request": round(hits / n, 3),
        "llm_latency_ms_avg": round(float(latency or 0), 2),
        "prompt_tokens_per_call": round(float(prompt or 0), 1),
        "stages_ms": {name: round(float(v or 0), 2) for name, v in zip(names, stages[:7], strict=True)},
        "attempts_avg": round(float(stages[7] or 0), 3),
        "steps": steps,
        "events_per_request": round(events / n, 3),
        "retrieve_context_chars": int(context or 0),
        "route_methods": routes,
    }


def baseline_calls(avg: float, n: int, mode: str) -> list[int]:
    """Provider calls for each baseline request: round(avg) each ("rounded"), or spread so that the
    total equals round(avg * n) ("exact")."""
    if mode == "rounded":
        return [max(1, round(avg))]
    return [math.floor((i + 1) * avg + 0.5) - math.floor(i * avg + 0.5) for i in range(n)]


def summarize(args: argparse.Namespace, phases: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    probed = not args.no_probe

    def mine(system: str) -> list[dict[str, Any]]:
        return [p for p in phases if p["system"] == system]

    def total_rps(system: str) -> float:
        return sum(p["requests"] for p in mine(system)) / sum(p["seconds"] for p in mine(system))

    def mean_of(system: str, key: str) -> float | None:
        return round(statistics.fmean(p["per_request"].get(key, 0) for p in mine(system)), 3) if probed else None

    def cpu_of(system: str) -> dict[str, float]:
        cpu = [p["cpu_ms_per_request"] for p in mine(system)]
        return {k: round(statistics.fmean(m[k] for m in cpu), 2) for k in cpu[0]}

    sb, base, biz = total_rps("switchboard"), total_rps("baseline"), total_rps("baseline_business")
    cpu = {system: cpu_of(system) for system in ("switchboard", "baseline", "baseline_business")}
    sb_calls = statistics.fmean(p["llm_calls_per_request"] for p in mine("switchboard"))
    base_calls = statistics.fmean(p["llm_calls_per_request"] for p in mine("baseline"))
    foreign = max(p["foreign_cpu_cores"] for p in phases)
    notes = (
        f"{len(phases)} phases of {args.requests} requests ({args.rounds} rounds, alternating order) after a "
        f"warm-up of {args.warmup} each; rps = all requests / all seconds per system; same services, "
        f"{args.concurrency} threads per pool, 1 router + 1 worker per specialist queue in each system. "
        f"Provider latency {args.latency_ms:g} ms; at 0 both systems are CPU-bound and cpu_ms_per_request shows where the time "
        f"goes (cpu_ratio = baseline CPU / Switchboard CPU per request, the load-independent estimate of the "
        f"ratio). Baseline = router (same classifier) + specialist making as many provider calls as Switchboard "
        f"({args.baseline_calls} mode: {base_calls:.2f} vs {sb_calls:.2f} per request; Switchboard's "
        f"response-cache hits are not provider calls) with Switchboard-shaped bodies + 1 INSERT; no record, "
        f"publisher confirms, task events or priority queues. baseline_business also runs the specialists' "
        f"retrieval and tools against the same seeded tables, so ratio_vs_business_baseline isolates the engine. "
        f"db_* counts come from SQLAlchemy events in the client and every worker. The benchmark's own "
        f"polling for the end of a phase (its thread and its PostgreSQL backends) is cpu_ms_per_request.poll, "
        f"left out of total_accounted for every system."
    )
    if foreign > 0.2:
        notes += (f" WARNING: up to {foreign} CPU cores were used by processes outside this benchmark during "
                  f"a phase (see phases[].foreign_cpu_cores); rps values are noisy, cpu_ratio less so.")
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "provider_latency_ms": args.latency_ms,
        "switchboard_rps": round(sb, 2),
        "baseline_rps": round(base, 2),
        "ratio": round(sb / base, 3),
        "baseline_business_rps": round(biz, 2),
        "ratio_vs_business_baseline": round(sb / biz, 3),
        # Both systems are CPU-bound here, so the ratio of CPU per request predicts the throughput
        # ratio without the noise other processes on the machine add to the rps.
        "cpu_ratio": round(cpu["baseline"]["total_accounted"] / cpu["switchboard"]["total_accounted"], 3),
        "cpu_ratio_vs_business_baseline": round(
            cpu["baseline_business"]["total_accounted"] / cpu["switchboard"]["total_accounted"], 3),
        "foreign_cpu_cores_max": foreign,
        "llm_calls_per_request": round(sb_calls, 3),
        "llm_cache_hits_per_request": round(statistics.fmean(
            r["llm_cache_hits_per_request"] for r in records), 3) if records else None,
        "baseline_llm_calls_per_request": round(base_calls, 3),
        "db_statements_per_request": mean_of("switchboard", "db_statements"),
        "db_transactions_per_request": mean_of("switchboard", "db_commits"),
        "db_checkouts_per_request": mean_of("switchboard", "db_checkouts"),
        "amqp_publishes_per_request": mean_of("switchboard", "amqp_publishes"),
        "baseline_db_statements_per_request": mean_of("baseline", "db_statements"),
        "baseline_business_db_statements_per_request": mean_of("baseline_business", "db_statements"),
        "baseline_amqp_publishes_per_request": mean_of("baseline", "amqp_publishes"),
        "cpu_ms_per_request": cpu,
        "phases": [{k: v for k, v in p.items() if k != "probes_per_request"} for p in phases],
        "probes_per_request": {
            system: mine(system)[0]["probes_per_request"] for system in ("switchboard", "baseline", "baseline_business")
        } if probed else {},
        "switchboard_stages_ms": records[-1]["stages_ms"] if records else {},
        "switchboard_steps": records[-1]["steps"] if records else {},
        "notes": notes,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{'phase':<28}{'requests':>9}{'seconds':>9}{'rps':>9}{'LLM calls/req':>15}{'CPU ms/req':>12}")
    for p in result["phases"]:
        print(f"{p['tag']:<28}{p['requests']:>9}{p['seconds']:>9.2f}{p['rps']:>9.1f}"
              f"{p['llm_calls_per_request']:>15.2f}{p['cpu_ms_per_request']['total_accounted']:>12.1f}")
    print()
    print(f"switchboard {result['switchboard_rps']:.1f} rps, baseline {result['baseline_rps']:.1f} rps, "
          f"ratio {result['ratio']:.3f} (target >= 0.9), cpu_ratio {result['cpu_ratio']:.3f}")
    print(f"baseline with business work {result['baseline_business_rps']:.1f} rps, ratio "
          f"{result['ratio_vs_business_baseline']:.3f}, cpu_ratio {result['cpu_ratio_vs_business_baseline']:.3f}")
    if result["db_statements_per_request"] is not None:
        print(f"switchboard per request: {result['db_statements_per_request']} SQL statements, "
              f"{result['db_transactions_per_request']} transactions, {result['db_checkouts_per_request']} pool "
              f"checkouts, {result['amqp_publishes_per_request']} AMQP publishes (baseline: "
              f"{result['baseline_db_statements_per_request']} statements, "
              f"{result['baseline_amqp_publishes_per_request']} publishes)")
    print("CPU ms per request:")
    for system, cpu in result["cpu_ms_per_request"].items():
        print(f"  {system:<18} " + ", ".join(f"{k}={v}" for k, v in cpu.items()))
    print("Switchboard stages (ms):", ", ".join(f"{k}={v}" for k, v in result["switchboard_stages_ms"].items()))
    print("Switchboard steps:", ", ".join(f"{k}={v['avg_ms']}ms" for k, v in result["switchboard_steps"].items()))
    print(f"notes: {result['notes']}")
