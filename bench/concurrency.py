"""How close one specialist worker process gets to the concurrency bound when the LLM is slow.

`python bench/concurrency.py --json [--latency S] [--concurrency C] [--requests N]`

One `technical` worker process (threads pool, concurrency C) against the simulated provider with a
fixed latency. Every request makes its LLM calls one after another, so no engine can finish more
than C / (calls per request x latency) requests a second: that is `bound_rps`, from the calls the
record says were made. `efficiency` = measured steady-state rps / bound. `max_db_connections` is
the most connections the worker process held at once (pg_stat_activity, by application_name).
Last line: {"concurrency", "latency_s", "rps", "bound_rps", "efficiency", "max_db_connections", ...}.
Targets: efficiency >= 0.9 with max_db_connections <= 10.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h  # noqa: E402

TEXT = "Our integration gets a 502 error from the API on every export call (ticket {n})"


def _poll_connections(dsn: str, stop: threading.Event, peak: dict[str, int]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT application_name, count(*) FROM pg_stat_activity "
                "WHERE application_name LIKE 'switchboard:technical:%' AND datname = current_database() GROUP BY 1"
            ).fetchall()
            for name, n in rows:
                peak[name] = max(peak.get(name, 0), n)
            time.sleep(0.05)


def run(args: argparse.Namespace) -> dict[str, object]:
    run_id = h.run_id()
    with contextlib.ExitStack() as stack:
        sb = h.scratch_switchboard(stack, f"conc-{run_id}", {
            "SWITCHBOARD_PROVIDER_RPM": "0",
            "SWITCHBOARD_TECHNICAL_CONCURRENCY": str(args.concurrency),
            "SWITCHBOARD_ROUTER_CONCURRENCY": "16",
            "SWITCHBOARD_SPECIALIST_POOL": args.pool,
        })
        env, port, database = sb.env, sb.simulator_port, sb.database
        from app.ingress import client
        from app.state import session_scope
        from app.ops.pools import pool_specs, simulator_spec
        from app.ops.supervisor import Supervisor, wait_for_workers

        log_dir = Path(".switchboard") / f"bench-concurrency-{run_id}"
        supervisor = stack.enter_context(Supervisor(log_dir, env=h.child_env(env), restart=False))
        latency_ms = str(int(args.latency * 1000))
        supervisor.start(simulator_spec(None, "--latency-ms", latency_ms, "--rpm", "0", "--tpm", "0"))
        h.wait_http(f"http://127.0.0.1:{port}/healthz")
        procs = {spec.name: supervisor.start(spec) for spec in pool_specs(queues=["router", "technical"])}
        wait_for_workers(["router", "technical"], timeout=120)
        worker_pid = procs["technical"].pid
        cpu_before = h.proc_cpu(worker_pid)
        h.log(f"one technical worker, {args.pool} x {args.concurrency}, provider latency {args.latency:g}s")

        stop, peak = threading.Event(), {}
        poller = threading.Thread(target=_poll_connections, args=(h.psycopg_dsn(database), stop, peak), daemon=True)
        poller.start()
        n = args.requests or 4 * args.concurrency
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda i: client.submit(TEXT.format(n=i)).id, range(n)))
        deadline = time.monotonic() + 60 + 10 * n * args.latency / args.concurrency
        from sqlalchemy import func, select

        from app.state import LlmCall, Request

        while time.monotonic() < deadline:
            with session_scope() as session:
                done = session.scalar(select(func.count()).select_from(Request).where(
                    Request.id.in_(ids), Request.status.in_(["succeeded", "dead_lettered"]))) or 0
            if done == n:
                break
            time.sleep(0.5)
        cpu_s = h.proc_cpu(worker_pid) - cpu_before
        stop.set()
        poller.join()
        with session_scope() as session:
            finished = sorted(session.scalars(select(Request.finished_at).where(
                Request.id.in_(ids), Request.status == "succeeded")).all())
            calls = session.scalar(select(func.count()).select_from(LlmCall).where(
                LlmCall.request_id.in_(ids), LlmCall.outcome == "ok", LlmCall.cache_hit.is_(False))) or 0
        if len(finished) < n:
            raise SystemExit(f"only {len(finished)} of {n} requests succeeded; see {log_dir}")
        c = args.concurrency
        # Steady state: leave out the first and last wave of C requests (ramp-up and drain).
        window = (finished[n - c] - finished[c]).total_seconds()
        rps = (n - 2 * c) / window
        calls_per_request = calls / n
        bound = c / (calls_per_request * args.latency)
        return {
            "concurrency": c,
            "latency_s": args.latency,
            "requests": n,
            "rps": round(rps, 2),
            "bound_rps": round(bound, 2),
            "efficiency": round(rps / bound, 3),
            "llm_calls_per_request": round(calls_per_request, 2),
            "max_db_connections": max(peak.values(), default=0),
            # One process runs Python on one core at a time (the GIL): CPU per request caps its
            # throughput whatever the concurrency, so this is what to cut when efficiency is low.
            "worker_cpu_ms_per_request": round(cpu_s * 1000 / n, 2),
            "cpu_bound_rps": round(n / cpu_s, 2) if cpu_s else None,
            "worker_processes": len(peak),
            "pool": args.pool,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=1.0, help="provider latency in seconds")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--requests", type=int, default=0, help="default: 4 x concurrency")
    parser.add_argument("--pool", default="threads", choices=["threads", "gevent"], help="Celery pool of the worker")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    h.install_signal_handlers()
    result = run(args)
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
