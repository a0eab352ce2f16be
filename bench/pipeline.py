"""Switchboard's own overhead: the full pipeline against a hand-written Celery baseline.

    python bench/pipeline.py --json [--requests N] [--concurrency C]

In one run, on the same RabbitMQ and PostgreSQL, with one zero-latency simulated provider and the
same worker concurrency, it measures:

1. Switchboard: client.submit -> router pool -> specialist pools -> workflow (understand + retrieve,
   draft agent loop with tools, deliver) -> record, with real worker processes started from
   app.ops.pools.pool_specs() in a scratch vhost and a scratch (migrated, seeded) database.
2. The baseline (bench/baseline_app.py): a router task with the same classifier, a specialist task
   making the same number of provider calls per request, shaped the same way, and one INSERT, in
   its own scratch vhost and database, with the same pool type, concurrency and process count.
3. The baseline with business work: the same, plus the specialists' own retrieval and tool
   functions against the same seeded tables, so that what remains is the engine alone.

After a warm-up of each, the systems run in rounds of alternating order (Switchboard, baseline,
baseline_business; then the reverse), each phase submitting N tickets from a thread pool, timed from
the first submit until the N-th request is finished in its record. rps = N / seconds; ratio =
switchboard / baseline. CPU per request of every process is measured too (cpu_ratio), as are SQL
statements, transactions and AMQP publishes per request (a probe in each worker, see _harness).
The last line of stdout is one JSON object (with --json); progress goes to stderr.

Everything started is stopped, and every scratch vhost and database dropped, also on Ctrl-C,
SIGTERM or error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h
from bench._pipeline_report import baseline_calls, print_table, summarize, switchboard_record

# --- setup ---------------------------------------------------------------------------------------


class Bench:
    """The services, processes and probes of one run; `close()` undoes all of it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stack = contextlib.ExitStack()
        self.run = h.run_id()
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"sb-bench-{self.run}-"))
        self.probe_dir = self.log_dir / "probes"
        self.pids: dict[str, list[int]] = {}
        self.ok = False

    # Setup is split so that a failure at any point leaves `close()` with exactly what to undo.
    def setup(self) -> None:
        args, run, stack = self.args, self.run, self.stack
        c = str(args.concurrency)
        self.sb_broker = stack.enter_context(h.scratch_vhost(f"sb-bench-{run}"))
        self.sb_db = stack.enter_context(h.scratch_database(f"sb_bench_{run}"))
        self.base_broker = stack.enter_context(h.scratch_vhost(f"sb-bench-base-{run}"))
        self.base_db = stack.enter_context(h.scratch_database(f"sb_bench_base_{run}"))
        port = h.free_port()
        env = {
            "SWITCHBOARD_BROKER_URL": self.sb_broker,
            "SWITCHBOARD_DATABASE_URL": self.sb_db,
            "SWITCHBOARD_PROVIDER_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "SWITCHBOARD_SIMULATOR_PORT": str(port),
            "SWITCHBOARD_PROVIDER_RPM": "0",
            "SWITCHBOARD_PROVIDER_TPM": "0",
            "SWITCHBOARD_SPECIALIST_POOL": "threads",
            "SWITCHBOARD_ROUTER_CONCURRENCY": c,
            "SWITCHBOARD_SPECIALIST_CONCURRENCY": c,
            "BENCH_BASELINE_BROKER_URL": self.base_broker,
            "BENCH_BASELINE_DATABASE_URL": self.base_db,
            "BENCH_BASELINE_PROVIDER_URL": f"http://127.0.0.1:{port}/v1",
            "BENCH_PROBE_DIR": str(self.probe_dir),
        }
        # Switchboard reads its settings (and builds its Celery app) at import: set the environment
        # of this process first, then import.
        os.environ.update(env)
        from app.config import reset_settings

        reset_settings()
        from app.orchestration.registry import specialists
        from app.orchestration.topology import work_queue_names

        self.queues = work_queue_names()
        for queue in self.queues:  # a per-queue override in the environment would beat C
            os.environ[f"SWITCHBOARD_{queue.upper()}_CONCURRENCY"] = c
            env[f"SWITCHBOARD_{queue.upper()}_CONCURRENCY"] = c
        self.specialists = sorted(specialists())

        from app.ops.migrate import upgrade
        from app.ops.seeding import seed_enabled
        from app.state import dispose_engine, session_scope
        from specialists.billing.seed import account_emails, invoice_ids, invoice_owners

        h.log("migrating and seeding the Switchboard database")
        upgrade(self.sb_db)
        with session_scope() as session:
            seed_enabled(session)
            self.emails, self.invoices = account_emails(session), invoice_ids(session)
            self.owners = invoice_owners(session)
        stack.callback(dispose_engine)

        import psycopg

        from bench import baseline_app

        # The baseline's database: its result table, plus the same seeded business tables for the
        # "baseline_business" phases, whose tool and retrieval functions are the specialists' own.
        h.log("migrating and seeding the baseline database")
        upgrade(self.base_db)
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session
        from sqlalchemy.pool import NullPool

        base_engine = create_engine(self.base_db, poolclass=NullPool)
        try:
            with Session(base_engine) as session, session.begin():
                seed_enabled(session)
        finally:
            base_engine.dispose()
        with psycopg.connect(h.psycopg_dsn(self.base_db), autocommit=True) as conn:
            conn.execute(baseline_app.RESULTS_DDL)
            # The baseline keeps no request rows, so the refund tool's reference to one must go.
            conn.execute("ALTER TABLE refunds DROP CONSTRAINT IF EXISTS refunds_request_id_fkey")
        self.sb_poll = stack.enter_context(psycopg.connect(h.psycopg_dsn(self.sb_db), autocommit=True))
        self.base_poll = stack.enter_context(psycopg.connect(h.psycopg_dsn(self.base_db), autocommit=True))
        # Watching for the end of a phase is the benchmark's work, not the system's: the polls'
        # server backends and the polling thread's CPU are reported apart (cpu_ms_per_request.poll)
        # and left out of total_accounted, alike for every system.
        self.watchers = frozenset(
            conn.execute("SELECT pg_backend_pid()").fetchone()[0] for conn in (self.sb_poll, self.base_poll)
        )
        self.poll_cpu = 0.0

        from app.ops.pools import ProcessSpec, pool_specs, simulator_spec
        from app.ops.supervisor import Supervisor
        from app.orchestration.celery_app import celery as sb_celery

        # Close this process's broker connections before the vhosts are deleted.
        stack.callback(sb_celery.close)
        stack.callback(baseline_app.app.close)
        supervisor = stack.enter_context(Supervisor(self.log_dir, env=h.child_env(env), restart=False))
        self.supervisor = supervisor

        h.log(f"starting the simulated provider on :{port} (latency {args.latency_ms:g} ms, no limits)")
        sim = simulator_spec(None, "--latency-ms", str(args.latency_ms), "--latency-jitter-ms", "0", "--rpm", "0", "--tpm", "0",
                             "--error-rate", "0", "--timeout-rate", "0")
        self.pids["simulator"] = [supervisor.start(sim).pid]
        h.wait_http(f"http://127.0.0.1:{port}/healthz")

        h.log(f"starting Switchboard pools {self.queues} and baseline pools, threads x {c} (logs: {self.log_dir})")
        for spec in pool_specs():
            argv = spec.argv if args.no_probe else h.probed(spec.argv, f"sb.{spec.name}")
            proc = supervisor.start(ProcessSpec(spec.name, argv, spec.env))
            self.pids[f"sb.{spec.name}"] = [proc.pid]
        for queue in ["router", *self.specialists]:
            argv = baseline_app.worker_argv(queue, args.concurrency, sys.executable)
            if not args.no_probe:
                argv = h.probed(argv, f"base.{queue}")
            # Its business functions use Switchboard's session helper: point it at the baseline's database.
            proc = supervisor.start(ProcessSpec(f"base-{queue}", argv, {
                "SWITCHBOARD_DATABASE_URL": self.base_db, "SWITCHBOARD_PROCESS_NAME": f"base-{queue}"}))
            self.pids[f"base.{queue}"] = [proc.pid]
        self.pids["bench"] = [os.getpid()]

        from app.ops.supervisor import wait_for_workers

        wait_for_workers(self.queues, timeout=120)
        h.wait_for_celery(baseline_app.app, [f"base-{q}" for q in ["router", *self.specialists]], timeout=120)
        h.log("all workers answer")
        if not args.no_probe:
            h.install_probe()  # counts this process's submit-side work (the poll uses plain psycopg)

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            h.log("stopping processes, dropping scratch databases and vhosts")
            self.stack.close()
        finally:
            if self.ok and not self.args.keep_logs:
                shutil.rmtree(self.log_dir, ignore_errors=True)
            else:
                h.log(f"logs kept in {self.log_dir}")

    # --- measurement -----------------------------------------------------------------------------

    def tickets(self, n: int, seed: int) -> list[Any]:
        from app.ops.surge import monday_morning
        from specialists.billing.seed import DEMO_TENANT

        # As the demo submits them: each ticket from the seeded customer it is about, so the tools
        # read that customer's rows as an app with signed-in users would have them do.
        return monday_morning(n, emails=self.emails, invoice_ids=self.invoices, seed=seed, owners=self.owners,
                              tenant=DEMO_TENANT)

    def _snap(self) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        time.sleep(0.6)  # let every probe write its latest counters
        probes = h.read_probes(self.probe_dir)
        probes["bench"] = h.COUNTERS.snapshot()
        dbs = (f"sb_bench_{self.run}", f"sb_bench_base_{self.run}")
        return h.cpu_snapshot(self.pids, dbs, self.watchers), probes

    def _wait(self, query: str, tag: str, n: int, conn: Any, started: float) -> tuple[float, int]:
        deadline = time.monotonic() + max(180.0, n * 1.0)
        polling = time.thread_time()
        while True:
            done, dead = conn.execute(query, (tag,)).fetchone()
            if done >= n:
                self.poll_cpu = time.thread_time() - polling
                return time.perf_counter() - started, dead
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tag}: only {done} of {n} requests finished in time (logs: {self.log_dir})")
            time.sleep(self.args.poll_s)

    def run_switchboard(self, tickets: list[Any], tag: str) -> dict[str, Any]:
        from app.ingress import client

        def send(t: Any) -> str:
            return client.submit(t.text, tenant=t.tenant, customer=t.customer, priority=t.priority,
                                 metadata={"bench": tag}).id

        # Every phase starts with an empty response cache, so phases are alike and the baseline's
        # call count (taken from a Switchboard phase) matches what the cache leaves to the provider.
        self.sb_poll.execute("TRUNCATE llm_cache")
        cpu0, probes0 = self._snap()
        started = time.perf_counter()
        with ThreadPoolExecutor(self.args.submitters, thread_name_prefix="submit") as pool:
            ids = list(pool.map(send, tickets))
        submitted = time.perf_counter() - started
        seconds, dead = self._wait(
            # A refund above the approval limit rests, parked, until a person decides.
            "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'dead_lettered', 'awaiting_approval', "
            "'needs_human')), "
            "count(*) FILTER (WHERE status = 'dead_lettered') FROM requests WHERE metadata->>'bench' = %s",
            tag, len(ids), self.sb_poll, started,
        )
        cpu1, probes1 = self._snap()
        return self._result("switchboard", tag, len(ids), seconds, submitted, dead, cpu0, cpu1, probes0, probes1)

    def run_baseline(self, tickets: list[Any], tag: str, calls: list[int], context_chars: int,
                     business: bool = False) -> dict[str, Any]:
        from bench import baseline_app

        def send(item: tuple[int, Any]) -> None:
            i, t = item
            baseline_app.submit(f"{tag}-{i}", t.text, calls[i % len(calls)], context_chars, tag, business, t.tenant)

        cpu0, probes0 = self._snap()
        started = time.perf_counter()
        with ThreadPoolExecutor(self.args.submitters, thread_name_prefix="submit") as pool:
            list(pool.map(send, enumerate(tickets)))
        submitted = time.perf_counter() - started
        seconds, dead = self._wait(
            "SELECT count(*), 0 FROM bench_results WHERE tag = %s", tag, len(tickets), self.base_poll, started
        )
        cpu1, probes1 = self._snap()
        system = "baseline_business" if business else "baseline"
        result = self._result(system, tag, len(tickets), seconds, submitted, dead, cpu0, cpu1, probes0, probes1)
        row = self.base_poll.execute(
            "SELECT avg(calls), sum(prompt_tokens)::float / nullif(sum(calls), 0) FROM bench_results WHERE tag = %s",
            (tag,),
        ).fetchone()
        result["llm_calls_per_request"] = round(float(row[0]), 3)
        result["prompt_tokens_per_call"] = round(float(row[1] or 0), 1)
        return result

    def _result(self, system: str, tag: str, n: int, seconds: float, submitted: float, dead: int,
                cpu0: dict[str, float], cpu1: dict[str, float], probes0: dict[str, Any], probes1: dict[str, Any]) -> dict[str, Any]:
        prefix = "sb." if system == "switchboard" else "base."
        cpu = h.delta(cpu1, cpu0)
        cpu["bench"] -= self.poll_cpu  # this thread's polling (see setup)
        own = {k: v for k, v in cpu.items() if k.startswith(prefix)}
        cpu_ms = {k: round(v * 1000 / n, 2) for k, v in sorted(own.items())}
        for k in ("simulator", "bench", "postgres", "rabbitmq"):
            cpu_ms[k] = round(cpu[k] * 1000 / n, 2)
        cpu_ms["poll"] = round((self.poll_cpu + cpu["postgres_poll"]) * 1000 / n, 2)
        # The broker is shared with every other user of this RabbitMQ, so it is reported but left out
        # of the total (it is a few ms per request at most when the machine is otherwise quiet).
        cpu_ms["total_accounted"] = round(sum(own.values()) * 1000 / n + sum(
            cpu_ms[k] for k in ("simulator", "bench", "postgres")), 2)
        ours = sum(v for k, v in cpu.items() if k not in ("machine_busy", "postgres_other")) + self.poll_cpu
        # Everything else the machine did meanwhile (other users of this machine and of the shared
        # PostgreSQL): the benchmark's noise, in CPU cores on average over the measured window.
        window = seconds + 0.6
        foreign = max(0.0, cpu["machine_busy"] - ours)
        probes = h.probe_delta(probes1, probes0)
        per_request: dict[str, dict[str, float]] = {}
        for role, counters in probes.items():
            if role.startswith(prefix) or role == "bench":
                per_request[role] = {k: round(v / n, 3) for k, v in sorted(counters.items())}
        totals: dict[str, float] = {}
        for role, counters in per_request.items():
            for key in ("db_statements", "db_commits", "db_checkouts", "amqp_publishes", "http_requests",
                        "threads_started", "thread_pools_created"):
                totals[key] = round(totals.get(key, 0) + counters.get(key, 0), 3)
        return {
            "system": system,
            "tag": tag,
            "requests": n,
            "seconds": round(seconds, 3),
            "rps": round(n / seconds, 2),
            "submit_seconds": round(submitted, 3),
            "dead_lettered": dead,
            "cpu_ms_per_request": cpu_ms,
            "foreign_cpu_cores": round(foreign / window, 2),
            "per_request": totals,
            "probes_per_request": per_request,
        }

def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    h.install_signal_handlers()
    try:
        bench.setup()
        n, w = args.requests, args.warmup

        h.log(f"warm-up: {w} requests each")
        warm = bench.run_switchboard(bench.tickets(w, seed=7), f"warm-sb-{bench.run}")
        warm_record = switchboard_record(bench.sb_poll, f"warm-sb-{bench.run}")
        calls = baseline_calls(warm_record["llm_calls_per_request"], n, args.baseline_calls)
        context_chars = warm_record["retrieve_context_chars"]
        bench.run_baseline(bench.tickets(w, seed=7), f"warm-base-{bench.run}", calls, context_chars)
        bench.run_baseline(bench.tickets(w, seed=7), f"warm-biz-{bench.run}", calls, context_chars, business=True)
        h.log(f"warm-up done (switchboard {warm['rps']} rps)")

        # Rounds alternate direction (A B C, C B A, A B C, ...) so a drift in machine load falls on
        # every system alike.
        systems = ["switchboard", "baseline", "baseline_business"]
        order = [(system, r) for r in range(args.rounds) for system in (systems if r % 2 == 0 else systems[::-1])]
        phases: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for i, (system, round_no) in enumerate(order):
            tag = f"{system}-{i}-{bench.run}"
            # Each round has tickets of its own, so Switchboard's response cache only hits on
            # repeats within a round, as in a real surge.
            tickets = bench.tickets(n, seed=42 + round_no)
            h.log(f"phase {i + 1}/{len(order)}: {system}, {n} requests")
            if system == "switchboard":
                result = bench.run_switchboard(tickets, tag)
                record = switchboard_record(bench.sb_poll, tag)
                records.append(record)
                result["llm_calls_per_request"] = record["llm_calls_per_request"]
                result["prompt_tokens_per_call"] = record["prompt_tokens_per_call"]
                # The next baseline phase makes as many calls as this phase did, request by request
                # on average, with as much context as this phase retrieved.
                calls = baseline_calls(record["llm_calls_per_request"], n, args.baseline_calls)
                context_chars = record["retrieve_context_chars"]
                result["record"] = record
            else:
                result = bench.run_baseline(tickets, tag, calls, context_chars, business=system == "baseline_business")
            h.log(f"  {system}: {result['rps']} rps ({result['seconds']} s), "
                  f"{result['llm_calls_per_request']} LLM calls/request")
            phases.append(result)
        bench.ok = True
        return summarize(args, phases, records)
    finally:
        bench.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker pool, both systems")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="1: SB, base; 2: SB, base, base, SB; more: + SB, base")
    parser.add_argument("--submitters", type=int, default=8, help="threads submitting requests")
    parser.add_argument("--baseline-calls", choices=("exact", "rounded"), default="exact",
                        help="exact: the baseline's total provider calls equal Switchboard's; rounded: "
                        "round(average) calls for every request")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="simulated provider latency per call (0: measure the engine's own CPU cost)")
    parser.add_argument("--poll-s", type=float, default=0.02)
    parser.add_argument("--no-probe", action="store_true", help="run workers without the counting probe")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 1 or args.rounds < 1:
        parser.error("--requests, --concurrency, --warmup and --rounds must be at least 1")
    try:
        result = run(args)
    except KeyboardInterrupt:
        h.log("interrupted; cleaned up")
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
