"""Switchboard side by side with a durable peer: the same support-ticket flow on DBOS Transact.

    python bench/peer.py --json [--requests N] [--concurrency C] [--latency-ms MS]

In one run, on the same PostgreSQL, against one simulated provider (`python -m app.simulator`,
the same latency for both), with the same worker concurrency:

1. Switchboard: client.submit -> router pool -> specialist pools -> the support-ticket workflow
   (understand + retrieve, the draft agent loop with tools, deliver) -> record, with real worker
   processes from app.ops.pools.pool_specs() in a scratch vhost and a scratch (migrated, seeded)
   database.
2. DBOS (bench/peer_dbos_app.py): DBOSClient.enqueue -> a router queue -> one queue per
   specialist, one DBOS process per queue with `worker_concurrency=C`, every LLM call, tool call
   and the delivery a checkpointed step, in a scratch database of its own (its system database
   plus the same seeded business tables).

After a warm-up of each, the two run in rounds of alternating order (SB, DBOS; DBOS, SB; ...),
each phase submitting N tickets from a thread pool, timed from the first submit until the N-th
request has finished (succeeded, awaiting approval, needs a person, or dead-lettered).
rps_ratio_vs_dbos = Switchboard rps / DBOS rps; cpu_ratio_vs_dbos = DBOS CPU per request /
Switchboard CPU per request, over every process of each side (its workers, the submitting
process, the PostgreSQL backends of its database, the simulator; RabbitMQ for Switchboard, which
is shared with other users and so reported separately as well). Target >= 1.0 for both.
The last line of stdout is one JSON object (with --json); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h

DONE = ("succeeded", "dead_lettered", "awaiting_approval", "needs_human")


class Bench:
    """The services and processes of one run; `close()` undoes all of it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stack = contextlib.ExitStack()
        self.run = h.run_id()
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"sb-peer-{self.run}-"))
        self.pids: dict[str, list[int]] = {}
        self.ok = False

    def setup(self) -> None:
        args, run, stack = self.args, self.run, self.stack
        c = str(args.concurrency)
        self.sb_broker = stack.enter_context(h.scratch_vhost(f"sb-peer-{run}"))
        self.sb_db = stack.enter_context(h.scratch_database(f"sb_peer_{run}"))
        self.dbos_db = stack.enter_context(h.scratch_database(f"sb_peer_dbos_{run}"))
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
            "BENCH_PEER_DATABASE_URL": self.dbos_db,
            "BENCH_PEER_PROVIDER_URL": f"http://127.0.0.1:{port}/v1",
        }
        os.environ.update(env)  # Switchboard reads its settings at import: set them first
        from app.config import reset_settings

        reset_settings()
        from app.orchestration.topology import work_queue_names

        self.queues = work_queue_names()
        for queue in self.queues:  # a per-queue override in the environment would beat C
            os.environ[f"SWITCHBOARD_{queue.upper()}_CONCURRENCY"] = c
            env[f"SWITCHBOARD_{queue.upper()}_CONCURRENCY"] = c

        import psycopg
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session
        from sqlalchemy.pool import NullPool

        from app.ops.migrate import upgrade
        from app.ops.seeding import seed_enabled
        from app.state import dispose_engine, session_scope
        from bench import peer_dbos_app
        from specialists.billing.seed import account_emails, invoice_ids, invoice_owners

        h.log("migrating and seeding the Switchboard database")
        upgrade(self.sb_db)
        with session_scope() as session:
            seed_enabled(session)
            self.emails, self.invoices = account_emails(session), invoice_ids(session)
            self.owners = invoice_owners(session)
        stack.callback(dispose_engine)

        h.log("migrating and seeding the DBOS database (business tables, results, DBOS system tables)")
        upgrade(self.dbos_db)
        engine = create_engine(self.dbos_db, poolclass=NullPool)
        try:
            with Session(engine) as session, session.begin():
                seed_enabled(session)
        finally:
            engine.dispose()
        with psycopg.connect(h.psycopg_dsn(self.dbos_db), autocommit=True) as conn:
            conn.execute(peer_dbos_app.RESULTS_DDL)
            # DBOS keeps no Switchboard request rows, so the refund tool's reference to one must go.
            conn.execute("ALTER TABLE refunds DROP CONSTRAINT IF EXISTS refunds_request_id_fkey")
        dbos_cli = Path(sys.executable).with_name("dbos")
        subprocess.run([str(dbos_cli), "migrate", "-s", self.dbos_db], check=True, capture_output=True)
        self.sb_poll = stack.enter_context(psycopg.connect(h.psycopg_dsn(self.sb_db), autocommit=True))
        self.dbos_poll = stack.enter_context(psycopg.connect(h.psycopg_dsn(self.dbos_db), autocommit=True))

        from dbos import DBOSClient

        self.dbos_client = DBOSClient(
            system_database_url=self.dbos_db, application_name=peer_dbos_app.APP_NAME
        )
        stack.callback(self.dbos_client.destroy)

        from app.ops.pools import ProcessSpec, pool_specs, simulator_spec
        from app.ops.supervisor import Supervisor, wait_for_workers
        from app.orchestration.celery_app import celery as sb_celery

        stack.callback(sb_celery.close)
        supervisor = stack.enter_context(Supervisor(self.log_dir, env=h.child_env(env), restart=False))
        h.log(f"starting the simulated provider on :{port} (latency {args.latency_ms:g} ms, no limits)")
        sim = simulator_spec(
            None,
            "--latency-ms",
            str(args.latency_ms),
            "--latency-jitter-ms",
            "0",
            "--rpm",
            "0",
            "--tpm",
            "0",
            "--error-rate",
            "0",
            "--timeout-rate",
            "0",
        )
        self.pids["simulator"] = [supervisor.start(sim).pid]
        h.wait_http(f"http://127.0.0.1:{port}/healthz")

        h.log(
            f"starting Switchboard pools {self.queues} and DBOS workers {peer_dbos_app.QUEUES}, x {c} "
            f"(logs: {self.log_dir})"
        )
        for spec in pool_specs():
            self.pids[f"sb.{spec.name}"] = [supervisor.start(spec).pid]
        for queue in peer_dbos_app.QUEUES:
            argv = [
                sys.executable,
                "-m",
                "bench.peer_dbos_app",
                queue,
                "--concurrency",
                c,
                "--polling-s",
                str(args.dbos_polling_s),
            ]
            # Its tool functions use Switchboard's session helper: point it at DBOS's database.
            proc = supervisor.start(
                ProcessSpec(
                    f"dbos-{queue}",
                    argv,
                    {"SWITCHBOARD_DATABASE_URL": self.dbos_db, "SWITCHBOARD_PROCESS_NAME": f"dbos-{queue}"},
                )
            )
            self.pids[f"dbos.{queue}"] = [proc.pid]
        self.pids["bench"] = [os.getpid()]
        wait_for_workers(self.queues, timeout=120)
        for queue in peer_dbos_app.QUEUES:
            wait_for_line(supervisor.log_path(f"dbos-{queue}"), f"peer worker {queue} ready", 120)
        h.log("all workers answer")

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

        return monday_morning(
            n,
            emails=self.emails,
            invoice_ids=self.invoices,
            seed=seed,
            owners=self.owners,
            tenant=DEMO_TENANT,
        )

    def _snap(self) -> dict[str, float]:
        return h.cpu_snapshot(self.pids, (f"sb_peer_{self.run}", f"sb_peer_dbos_{self.run}"))

    def _wait(self, conn: Any, query: str, tag: str, n: int, started: float) -> float:
        deadline = time.monotonic() + max(180.0, n * 1.0)
        while conn.execute(query, (tag,)).fetchone()[0] < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tag}: not all {n} requests finished in time (logs: {self.log_dir})")
            time.sleep(self.args.poll_s)
        return time.perf_counter() - started

    def run_phase(self, system: str, tickets: list[Any], tag: str) -> dict[str, Any]:
        from app.ingress import client

        def send_sb(t: Any) -> None:
            client.submit(
                t.text, tenant=t.tenant, customer=t.customer, priority=t.priority, metadata={"bench": tag}
            )

        def send_dbos(t: Any) -> None:
            ticket = {
                "id": str(uuid.uuid4()),
                "tag": tag,
                "text": t.text,
                "tenant": t.tenant,
                "customer": t.customer,
                "priority": t.priority,
            }
            # The ticket's id is its workflow's id, so its end-to-end time can be read back.
            self.dbos_client.enqueue(
                {"queue_name": "router", "workflow_name": "peer.route_ticket", "workflow_id": ticket["id"]},
                ticket,
            )

        if system == "switchboard":
            self.sb_poll.execute("TRUNCATE llm_cache")  # every phase starts with an empty response cache
        cpu0 = self._snap()
        started = time.perf_counter()
        with ThreadPoolExecutor(self.args.submitters, thread_name_prefix="submit") as pool:
            list(pool.map(send_sb if system == "switchboard" else send_dbos, tickets))
        submitted = time.perf_counter() - started
        if system == "switchboard":
            seconds = self._wait(
                self.sb_poll,
                f"SELECT count(*) FROM requests WHERE metadata->>'bench' = %s AND status IN {DONE!r}",
                tag,
                len(tickets),
                started,
            )
        else:
            seconds = self._wait(
                self.dbos_poll, "SELECT count(*) FROM peer_results WHERE tag = %s", tag, len(tickets), started
            )
        time.sleep(0.3)
        cpu = h.delta(self._snap(), cpu0)
        return {
            **self._result(system, tag, len(tickets), seconds, cpu),
            "submit_seconds": round(submitted, 3),
        }

    def _result(self, system: str, tag: str, n: int, seconds: float, cpu: dict[str, float]) -> dict[str, Any]:
        prefix = "sb." if system == "switchboard" else "dbos."
        own = {k: v for k, v in cpu.items() if k.startswith(prefix)}
        cpu_ms = {k: round(v * 1000 / n, 2) for k, v in sorted(own.items())}
        for k in ("simulator", "bench", "postgres", "rabbitmq"):
            cpu_ms[k] = round(cpu[k] * 1000 / n, 2)
        # The broker counts for Switchboard (its side uses it); it is shared with other users of
        # this RabbitMQ, so it is also shown alone, and the total without it is kept too.
        without_broker = sum(own.values()) * 1000 / n + sum(
            cpu_ms[k] for k in ("simulator", "bench", "postgres")
        )
        cpu_ms["total_without_broker"] = round(without_broker, 2)
        cpu_ms["total"] = round(without_broker + (cpu_ms["rabbitmq"] if system == "switchboard" else 0.0), 2)
        ours = sum(v for k, v in cpu.items() if k not in ("machine_busy", "postgres_other"))
        foreign = max(0.0, cpu["machine_busy"] - ours) / (seconds + 0.3)
        return {
            "system": system,
            "tag": tag,
            "requests": n,
            "seconds": round(seconds, 3),
            "rps": round(n / seconds, 2),
            "cpu_ms_per_request": cpu_ms,
            "foreign_cpu_cores": round(foreign, 2),
            **self.outcomes(system, tag, n),
        }

    def outcomes(self, system: str, tag: str, n: int) -> dict[str, Any]:
        """What each side's record says: outcomes, provider calls and tool calls per request."""
        conn: Any = self.sb_poll if system == "switchboard" else self.dbos_poll
        q = conn.execute
        if system == "switchboard":
            ids = "SELECT id FROM requests WHERE metadata->>'bench' = %s"
            statuses = dict(
                q(
                    "SELECT status, count(*) FROM requests WHERE metadata->>'bench' = %s GROUP BY 1", (tag,)
                ).fetchall()
            )
            calls = q(
                f"SELECT count(*) FILTER (WHERE NOT cache_hit) FROM llm_calls WHERE request_id IN ({ids})",
                (tag,),
            ).fetchone()[0]
            latency = q(
                "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY "
                "extract(epoch FROM finished_at - accepted_at) * 1000) FROM requests "
                "WHERE metadata->>'bench' = %s",
                (tag,),
            ).fetchone()[0]
            tools = q(
                f"SELECT coalesce(sum(jsonb_array_length(output->'tool_calls')), 0) FROM step_runs "
                f"WHERE step = 'draft' AND output ? 'tool_calls' AND request_id IN ({ids})",
                (tag,),
            ).fetchone()[0]
        else:
            statuses = dict(
                q("SELECT status, count(*) FROM peer_results WHERE tag = %s GROUP BY 1", (tag,)).fetchall()
            )
            calls, tools = q(
                "SELECT sum(llm_calls), sum(jsonb_array_length(tool_calls)) FROM peer_results WHERE tag = %s",
                (tag,),
            ).fetchone()
            # From the route workflow's creation (the enqueue) to the result row (the delivery).
            latency = q(
                "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY "
                "extract(epoch FROM r.created_at) * 1000 - w.created_at) FROM peer_results r "
                "JOIN dbos.workflow_status w ON w.workflow_uuid = r.request_id WHERE r.tag = %s",
                (tag,),
            ).fetchone()[0]
        return {
            "outcomes": statuses,
            "llm_calls_per_request": round(float(calls or 0) / n, 3),
            "tool_calls_per_request": round(float(tools or 0) / n, 3),
            "end_to_end_ms_p50_p95": [round(float(v), 1) for v in latency or []],
        }


def wait_for_line(path: Path, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and line in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name}: no {line!r} within {timeout:g}s")
        time.sleep(0.2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    h.install_signal_handlers()
    try:
        bench.setup()
        h.log(f"warm-up: {args.warmup} requests each")
        for system in ("switchboard", "dbos"):
            warm = bench.run_phase(system, bench.tickets(args.warmup, seed=7), f"warm-{system}-{bench.run}")
            h.log(f"  {system}: {warm['rps']} rps")
        systems = ["switchboard", "dbos"]
        order = [(s, r) for r in range(args.rounds) for s in (systems if r % 2 == 0 else systems[::-1])]
        phases = []
        for i, (system, round_no) in enumerate(order):
            h.log(f"phase {i + 1}/{len(order)}: {system}, {args.requests} requests")
            result = bench.run_phase(
                system, bench.tickets(args.requests, seed=42 + round_no), f"{system}-{i}-{bench.run}"
            )
            h.log(
                f"  {system}: {result['rps']} rps, {result['cpu_ms_per_request']['total']} CPU ms/request, "
                f"{result['llm_calls_per_request']} LLM calls/request, end to end p50/p95 "
                f"{result['end_to_end_ms_p50_p95']} ms, all submitted in {result['submit_seconds']} s, "
                f"outcomes {result['outcomes']}"
            )
            phases.append(result)
        bench.ok = True
        return summarize(args, phases)
    finally:
        bench.close()


def summarize(args: argparse.Namespace, phases: list[dict[str, Any]]) -> dict[str, Any]:
    def mine(system: str) -> list[dict[str, Any]]:
        return [p for p in phases if p["system"] == system]

    def rps(system: str) -> float:
        return sum(p["requests"] for p in mine(system)) / sum(p["seconds"] for p in mine(system))

    def cpu(system: str) -> dict[str, float]:
        per = [p["cpu_ms_per_request"] for p in mine(system)]
        return {k: round(statistics.fmean(m[k] for m in per), 2) for k in per[0]}

    def mean(system: str, key: str) -> float:
        return round(statistics.fmean(p[key] for p in mine(system)), 3)

    sb_cpu, dbos_cpu = cpu("switchboard"), cpu("dbos")
    foreign = max(p["foreign_cpu_cores"] for p in phases)
    notes = (
        f"{len(phases)} phases of {args.requests} requests ({args.rounds} rounds, alternating order) after a warm-up "
        f"of {args.warmup} each; {args.concurrency} threads per Switchboard pool and worker_concurrency "
        f"{args.concurrency} per DBOS process, one process per queue on each side; provider latency "
        f"{args.latency_ms:g} ms; DBOS queue polling every {args.dbos_polling_s:g} s. cpu_ratio_vs_dbos = DBOS CPU "
        f"per request / Switchboard CPU per request (totals incl. RabbitMQ for Switchboard; "
        f"cpu_ratio_vs_dbos_without_broker leaves the shared broker out). Switchboard's response cache may "
        f"answer repeated calls (llm_calls_per_request counts provider calls only)."
    )
    if foreign > 0.2:
        notes += (
            f" WARNING: up to {foreign} CPU cores were used by other processes during a phase: rps is noisy."
        )
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "provider_latency_ms": args.latency_ms,
        "switchboard_rps": round(rps("switchboard"), 2),
        "dbos_rps": round(rps("dbos"), 2),
        "rps_ratio_vs_dbos": round(rps("switchboard") / rps("dbos"), 3),
        "cpu_ratio_vs_dbos": round(dbos_cpu["total"] / sb_cpu["total"], 3),
        "cpu_ratio_vs_dbos_without_broker": round(
            dbos_cpu["total_without_broker"] / sb_cpu["total_without_broker"], 3
        ),
        "cpu_ms_per_request": {"switchboard": sb_cpu, "dbos": dbos_cpu},
        "llm_calls_per_request": {
            "switchboard": mean("switchboard", "llm_calls_per_request"),
            "dbos": mean("dbos", "llm_calls_per_request"),
        },
        "tool_calls_per_request": {
            "switchboard": mean("switchboard", "tool_calls_per_request"),
            "dbos": mean("dbos", "tool_calls_per_request"),
        },
        "foreign_cpu_cores_max": foreign,
        "load_average": list(os.getloadavg()),
        "phases": phases,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--concurrency", type=int, default=8, help="worker concurrency per process, both sides"
    )
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="1: SB, DBOS; 2: SB, DBOS, DBOS, SB; ...")
    parser.add_argument("--submitters", type=int, default=8, help="threads submitting requests")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated provider latency per call")
    parser.add_argument(
        "--dbos-polling-s",
        type=float,
        default=0.1,
        help="DBOS queue polling interval (its default is 1 s, which bounds its dequeue latency)",
    )
    parser.add_argument("--poll-s", type=float, default=0.02)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.warmup, args.rounds) < 1:
        parser.error("--requests, --concurrency, --warmup and --rounds must be at least 1")
    try:
        result = run(args)
    except KeyboardInterrupt:
        h.log("interrupted; cleaned up")
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        for p in result["phases"]:
            print(
                f"{p['tag']:<34}{p['rps']:>8.1f} rps {p['cpu_ms_per_request']['total']:>8.1f} CPU ms/req "
                f"{p['outcomes']}"
            )
        print(
            f"rps_ratio_vs_dbos {result['rps_ratio_vs_dbos']}, cpu_ratio_vs_dbos {result['cpu_ratio_vs_dbos']} "
            f"(target >= 1.0 for both)\nnotes: {result['notes']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
