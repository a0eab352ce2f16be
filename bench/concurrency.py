"""How close one specialist worker process gets to the concurrency bound when the LLM is slow.

`python bench/concurrency.py --json [--latency S] [--concurrency C] [--requests N]`

One `technical` worker process (threads pool, concurrency C) against the simulated provider with a
fixed latency. Every request makes its LLM calls one after another, so no engine can finish more
than C / (calls per request x latency) requests a second: that is `bound_rps`, from the calls the
record says were made. `efficiency` = measured steady-state rps / bound. `max_db_connections` is
the most connections the worker process held at once (pg_stat_activity, by application_name).
One process runs Python on one core at a time (the GIL), so its CPU per request also caps it:
`cpu_bound_rps` = requests / worker CPU seconds. `efficiency_vs_bound` = rps / min(bound_rps,
cpu_bound_rps): how close the process gets to whichever bound binds, i.e. whether it ever waits
inside the engine while its core has room. What the machine let it have is printed beside it, from
the steady-state window: `worker_core_share` (worker CPU seconds per second) and
`worker_run_delay_share` (seconds per second its threads were ready to run but waited for a CPU
taken by other processes, from /proc/<pid>/task/*/schedstat): on a shared machine a low
efficiency with a high run delay is the machine, with a low run delay it is the engine.
`db_connections_by_state` says where the worker's connections were (see the code).
Last line: {"concurrency", "latency_s", "rps", "bound_rps", "efficiency", "efficiency_vs_bound",
"max_db_connections", ...}.
Targets (issue 18): efficiency_vs_bound >= 0.9 with max_db_connections <= 10.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h

TEXT = "Our integration gets a 502 error from the API on every export call (ticket {n})"


def _run_delay_s(pid: int) -> float:
    """Seconds the process's threads have spent ready to run but waiting for a CPU (field 2 of
    each thread's schedstat, in nanoseconds); threads that ended are not counted."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def _poll(dsn: str, pid: int, stop: threading.Event, peak: dict[str, int], states: dict[str, int],
          samples: list[tuple[float, float, float]]) -> None:
    """Peak connections per worker process, the worker's connections by state summed over the
    samples, and (time, worker CPU s, worker run delay s) samples."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        tick = 0
        delay = _run_delay_s(pid)
        while not stop.is_set():
            rows = conn.execute(
                "SELECT application_name, state, wait_event_type = 'Lock', count(*) FROM pg_stat_activity "
                "WHERE application_name LIKE 'switchboard:technical:%' AND datname = current_database() "
                "GROUP BY 1, 2, 3"
            ).fetchall()
            held: dict[str, int] = {}
            for name, state, locked, n in rows:
                held[name] = held.get(name, 0) + n
                kind = "lock_wait" if locked else (state or "unknown").replace(" ", "_")
                states[kind] = states.get(kind, 0) + n
            for name, n in held.items():
                peak[name] = max(peak.get(name, 0), n)
            states["_samples"] = states.get("_samples", 0) + 1
            if tick % 10 == 0:  # reading every thread's schedstat costs more: every 0.5 s
                delay = _run_delay_s(pid)
            samples.append((time.time(), h.proc_cpu(pid), delay))
            tick += 1
            time.sleep(0.05)


def _at(samples: list[tuple[float, float, float]], when: float) -> tuple[float, float, float]:
    """The sample nearest `when`."""
    return min(samples, key=lambda s: abs(s[0] - when))


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
        from app.ops.pools import pool_specs, simulator_spec
        from app.ops.supervisor import Supervisor, wait_for_workers
        from app.state import session_scope

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

        stop, peak, states, samples = threading.Event(), {}, {}, []
        poller = threading.Thread(target=_poll, args=(h.psycopg_dsn(database), worker_pid, stop, peak, states, samples),
                                  daemon=True)
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
        cpu_bound = n / cpu_s if cpu_s else float("inf")
        first, last = _at(samples, finished[c].timestamp()), _at(samples, finished[n - c].timestamp())
        span = (last[0] - first[0]) or window
        return {
            "concurrency": c,
            "latency_s": args.latency,
            "requests": n,
            "rps": round(rps, 2),
            "bound_rps": round(bound, 2),
            "efficiency": round(rps / bound, 3),
            # One process runs Python on one core at a time (the GIL): CPU per request caps its
            # throughput whatever the concurrency, so this is what to cut when efficiency is low.
            "worker_cpu_ms_per_request": round(cpu_s * 1000 / n, 2),
            "cpu_bound_rps": round(cpu_bound, 2),
            "efficiency_vs_bound": round(rps / min(bound, cpu_bound), 3),
            "binding_bound": "little" if bound <= cpu_bound else "cpu",
            "worker_core_share": round((last[1] - first[1]) / span, 3),
            "worker_run_delay_share": round((last[2] - first[2]) / span, 3),
            "llm_calls_per_request": round(calls_per_request, 2),
            "max_db_connections": max(peak.values(), default=0),
            # The worker's connections on average over the run, by what PostgreSQL saw them do:
            # `active` running a statement, `lock_wait` (of those) waiting for a row lock,
            # `idle_in_transaction` held by a thread between statements (its Python, or its wait
            # for the GIL, while the transaction's locks stay held), `idle` back in the pool.
            "db_connections_by_state": {k: round(v / max(1, states.get("_samples", 1)), 2)
                                        for k, v in sorted(states.items()) if k != "_samples"},
            "worker_processes": len(peak),
            "pool": args.pool,
            "load_avg_1m": round(os.getloadavg()[0], 2),
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
