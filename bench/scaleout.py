"""Throughput of one specialist pool with 1 and then 2 worker processes, the rate limit not binding.

`python bench/scaleout.py --json [--requests N] [--concurrency C] [--latency S]`

Each phase loads the `technical` queue with N requests while no technical worker runs (the router
routes them all first), then starts the phase's worker processes (threads pool, C threads each, as
`switchboard scale` lays them out) and measures how fast they drain the queue, from the record:
steady-state requests per second between the first and last wave of finishes. The provider is the
simulator with a fixed latency and no limits, so with enough threads a single process is bound by
its own CPU (one core under the GIL), and a second process can use the second core.

What else shares the machine matters on 2 cores: PostgreSQL, RabbitMQ and the simulator serve both
phases, and other jobs may run. Each phase reports CPU seconds per role, `worker_cores` (cores the
technical processes got) and `other_cores` (cores the machine spent on anything else), and the run
reports the load average before and after and `worker_cores_ratio`, the most the speedup can be
when the workers are CPU-bound, and `speedup_vs_cores` = speedup / worker_cores_ratio: how much
of the CPU the second process got turned into throughput (target >= 0.9), which other jobs on
the machine do not move.

Then an I/O-bound phase with 1, 2 and 4 processes of `--io-concurrency` threads against a provider
with `--io-latency` (2 s) and limits configured but not binding: each process needs little CPU,
so throughput should follow the process count unless what the processes share (the limiter's
bucket rows, the breaker's, the record's) serialises them: `io_speedup_2`, `io_speedup_4`
(targets >= 1.9 and >= 3.6).
Last line: {"rps_1", "rps_2", "speedup", "speedup_vs_cores", "io_speedup_2", "io_speedup_4", ...}.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h

TEXT = "Our export job fails with a 502 error on the orders endpoint (run {run}, job {n})"


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class _WaitSampler(threading.Thread):
    """Samples pg_stat_activity for one database while a phase runs: which waits its active
    backends are in, and on which statement, to show rows every process contends for."""

    def __init__(self, database: str) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.stop = threading.Event()
        self.seen: collections.Counter[str] = collections.Counter()
        self.samples = 0

    def run(self) -> None:
        from sqlalchemy import text

        from app.state import autocommit_scope

        query = text("""
            SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait, left(query, 60) AS q
            FROM pg_stat_activity
            WHERE datname = :db AND state = 'active' AND pid <> pg_backend_pid()
        """)
        while not self.stop.wait(0.1):
            with autocommit_scope() as conn:
                rows = conn.execute(query, {"db": self.database}).all()
            self.samples += 1
            for wait, q in rows:
                self.seen[f"{wait} | {' '.join(q.split())[:50]}"] += 1

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.join(timeout=5)

    def counts(self) -> dict[str, float]:
        """Mean backends in each wait per sample, the largest first."""
        return {k: round(v / max(self.samples, 1), 2) for k, v in self.seen.most_common(8)}


class Bench:
    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.run = h.run_id()
        self.sb = h.scratch_switchboard(stack, f"scale-{self.run}", {
            "SWITCHBOARD_PROVIDER_RPM": "0",
            "SWITCHBOARD_PROVIDER_TPM": "0",
            "SWITCHBOARD_ROUTER_CONCURRENCY": "16",
            "SWITCHBOARD_TECHNICAL_CONCURRENCY": str(args.concurrency),
            # The bench's backlog must not be refused or degraded.
            "SWITCHBOARD_DEGRADE_THRESHOLDS": "*=1000000/1000000",
        })
        from app.ops.pools import pool_specs
        from app.ops.supervisor import Supervisor, wait_for_workers

        self.log_dir = Path(".switchboard") / f"bench-scaleout-{self.run}"
        self.supervisor = stack.enter_context(Supervisor(self.log_dir, env=h.child_env(self.sb.env), restart=False))
        self.pids: dict[str, list[int]] = {"bench": [os.getpid()]}
        self.simulator(args.latency)
        router = pool_specs(queues=["router"])[0]
        self.pids["router"] = [self.supervisor.start(router).pid]
        wait_for_workers(["router"], timeout=120)

    def _load_queue(self, n: int, phase: str) -> list[str]:
        from app.ingress import client

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda i: client.submit(TEXT.format(run=phase, n=i)).id, range(n)))
        self._wait(ids, "routed", 60 + n * 0.2)
        return ids

    def _wait(self, ids: list[str], status: str, timeout: float) -> None:
        from sqlalchemy import func, select

        from app.state import Request, session_scope

        deadline = time.monotonic() + timeout
        while True:
            with session_scope() as session:
                reached = session.scalar(select(func.count()).where(Request.id.in_(ids), Request.status == status)) or 0
                dead = session.scalar(select(func.count()).where(Request.id.in_(ids),
                                                                 Request.status == "dead_lettered")) or 0
            if dead:
                raise SystemExit(f"{dead} request(s) dead-lettered; see {self.log_dir}")
            if reached == len(ids):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"only {reached} of {len(ids)} requests {status} in time; see {self.log_dir}")
            time.sleep(0.5)

    def simulator(self, latency_s: float) -> None:
        """(Re)start the provider simulator with this latency and no limits of its own."""
        from app.ops.pools import simulator_spec

        if "simulator" in self.supervisor.specs:
            self.supervisor.stop("simulator")
        sim = simulator_spec(None, "--latency-ms", str(int(latency_s * 1000)), "--latency-jitter-ms", "0",
                             "--rpm", "0", "--tpm", "0", "--error-rate", "0", "--timeout-rate", "0")
        self.pids["simulator"] = [self.supervisor.start(sim).pid]
        h.wait_http(f"http://127.0.0.1:{self.sb.simulator_port}/healthz")

    def phase(
        self, kind: str, processes: int, c: int, n: int, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        from sqlalchemy import func, select

        from app.ops.pools import worker_spec
        from app.orchestration.celery_app import celery
        from app.state import LlmCall, Request, session_scope

        specs = [worker_spec("technical", c, index=i) for i in range(processes)]
        for spec in specs:
            spec.env.update(env or {})
        names = [spec.name for spec in specs]
        roles = {f"technical{i}": [self.supervisor.start(spec).pid] for i, spec in enumerate(specs)}
        pids = {**self.pids, **roles}
        databases = (f"sb_scale_{self.run}",)
        h.wait_for_celery(celery, names, timeout=120)
        # Paused while the queue fills, so every process starts on the backlog at the same moment.
        nodes = [node for reply in celery.control.ping(timeout=2.0) for node in reply
                 if node.split("@")[0] in names]
        celery.control.cancel_consumer("technical", destination=nodes, reply=True)
        h.log(f"phase {processes}: loading {n} requests into the technical queue")
        # Texts of their own per phase: the `understand` step's call is single-shot and so cached by
        # its messages, and a text an earlier phase sent (the CPU phases' `-p1` was the I/O phase's
        # too) would skip one provider call in three and make that phase look faster.
        ids = self._load_queue(n, f"{self.run}-{kind}{processes}")
        celery.control.add_consumer("technical", destination=nodes, reply=True)
        cpu0 = h.cpu_snapshot(pids, databases)
        h.log(f"phase {processes}: {processes} technical process(es) x {c} threads draining")
        with _WaitSampler(databases[0]) as waits:
            self._wait(ids, "succeeded", 120 + n * 2.0)
        cpu = h.delta(h.cpu_snapshot(pids, databases), cpu0)
        for name in names:
            self.supervisor.stop(name)
        with session_scope() as session:
            spans = session.execute(select(Request.started_at, Request.finished_at).where(Request.id.in_(ids))).all()
            calls = session.scalar(select(func.count()).select_from(LlmCall).where(LlmCall.request_id.in_(ids)))
            hits = session.scalar(select(func.count()).select_from(LlmCall).where(
                LlmCall.request_id.in_(ids), LlmCall.cache_hit.is_(True)))
            waited = session.scalar(select(func.avg(LlmCall.limiter_wait_ms)).where(LlmCall.request_id.in_(ids)))
        finished = sorted(f for _, f in spans)
        start = min(s for s, _ in spans)
        rps = _steady_rps([(f - start).total_seconds() for f in finished], min(processes * c, n // 4))
        elapsed = (finished[-1] - start).total_seconds()
        ours = sum(v for k, v in cpu.items() if k not in ("machine_busy", "postgres_other"))
        worker_cpu = sum(cpu[r] for r in roles)
        return {
            "processes": processes,
            "requests": n,
            "rps": round(rps, 2),
            "overall_rps": round(n / elapsed, 2),
            "seconds": round(elapsed, 2),
            # A request's time from its start to its end, and what it spent on the provider: the
            # rest is the pipeline (queueing for a thread, the record, the limiter).
            "request_s": round(sum((f - s).total_seconds() for s, f in spans) / n, 3),
            "llm_calls_per_request": round((calls or 0) / n, 2),
            # Calls answered from the response cache: none, unless texts repeat.
            "cache_hits_per_request": round((hits or 0) / n, 2),
            "limiter_wait_ms": round(float(waited or 0), 2),
            # What the database's busy backends were waiting on, sampled every 0.1 s: row locks
            # (Lock:transactionid, Lock:tuple) on shared rows, WAL flushes (IO:WALSync), ...
            "db_waits": waits.counts(),
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "worker_cpu_per_request_ms": round(worker_cpu / n * 1000, 2),
            # Cores the technical processes got, and cores the machine spent on work not this bench's.
            "worker_cores": round(worker_cpu / elapsed, 2),
            "other_cores": round((cpu["machine_busy"] - ours) / elapsed, 2),
            "other_busy_s": round(cpu["machine_busy"] - ours, 2),
        }


def _steady_rps(finished: list[float], wave: int) -> float:
    """Requests per second in steady state, from the sorted finish times (seconds from the start)
    of a backlog drained by `wave` threads: leave out the first and last wave (ramp-up and drain),
    and compare the mean finish time of the second wave's worth of finishes with that of the same
    number `lag` finishes later.

    With few threads that all start together (4 threads, 2 s calls), finishes come in tight waves,
    and a rate taken between two single finishes counts the finishes between them against the time
    between them: from the first finish of a wave to the last of a later one it counts a whole
    wave too many (1.25-1.31x for 24-96 requests), and less so when the processes drift apart, so
    the ratio between phases moved with how aligned each was. The mean over a wave's worth of
    consecutive finishes moves by exactly `lag` / rate whether the waves are aligned or not."""
    n = len(finished)
    lag = n - 3 * wave
    first = sum(finished[wave : 2 * wave]) / wave
    later = sum(finished[wave + lag : 2 * wave + lag]) / wave
    return lag / (later - first)


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = _load_avg()
    with contextlib.ExitStack() as stack:
        bench = Bench(args, stack)
        result: dict[str, Any] = {}
        if "cpu" in args.phases:
            result.update(cpu_phases(bench, args))
        if "io" in args.phases:
            result.update(io_phases(bench, args))
    return {**result, "cores": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": _load_avg()}


def cpu_phases(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    one = bench.phase("cpu", 1, args.concurrency, args.requests)
    two = bench.phase("cpu", 2, args.concurrency, args.requests)
    ratio = two["worker_cores"] / one["worker_cores"]
    speedup = two["rps"] / one["rps"]
    return {
        "rps_1": one["rps"],
        "rps_2": two["rps"],
        "speedup": round(speedup, 3),
        # The second process can only help as far as it gets a core: how much more CPU the pool got.
        "worker_cores_ratio": round(ratio, 3),
        # The speedup per unit of extra CPU the workers got: 1.0 when throughput follows the cores
        # (nothing shared holds it back), whatever else the machine was doing.
        "speedup_vs_cores": round(speedup / ratio, 3),
        "concurrency_per_process": args.concurrency,
        "latency_s": args.latency,
        "phases": [one, two],
    }


def io_phases(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
        # I/O-bound: few threads per process, each waiting on a slow provider, so a process needs
        # little CPU and N processes should give N times the throughput unless something they share
        # (the limiter's bucket rows, the breaker, the record) serialises them. Limits are
        # configured (so every call reserves) but far from binding.
    bench.simulator(args.io_latency)
    io_env = {"SWITCHBOARD_PROVIDER_RPM": "10000000", "SWITCHBOARD_PROVIDER_TPM": "10000000000"}
    c = args.io_concurrency
    io = [bench.phase("io", p, c, p * c * args.io_waves, io_env) for p in (1, 2, 4)]
    return {
        "io_rps": [p["rps"] for p in io],
        "io_speedup_2": round(io[1]["rps"] / io[0]["rps"], 3),
        "io_speedup_4": round(io[2]["rps"] / io[0]["rps"], 3),
        "io_concurrency_per_process": c,
        "io_latency_s": args.io_latency,
        "io_phases": io,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=48, help="threads per worker process")
    parser.add_argument("--latency", type=float, default=0.1, help="provider latency in seconds")
    parser.add_argument("--io-concurrency", type=int, default=4, help="threads per process, I/O-bound phase")
    parser.add_argument("--io-latency", type=float, default=2.0, help="provider latency, I/O-bound phase")
    parser.add_argument("--io-waves", type=int, default=6, help="requests per thread, I/O-bound phase")
    parser.add_argument("--phases", default="cpu,io", help="which phases to run: cpu, io or both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    h.install_signal_handlers()
    result = run(args)
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
