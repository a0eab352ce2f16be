"""Fault scenarios: a burst of realistic tickets through real worker processes while one thing breaks.

    python bench/faults.py --json [--tickets 60] [--outage-seconds 30] [--scenarios kill_worker,poison]

Each scenario runs on the PRIVATE services of `bench.private_services` (a RabbitMQ node and a
PostgreSQL cluster of our own, on free ports), in a fresh vhost and a fresh database, migrated and
seeded, with the simulated provider (100 ms latency) and the router, billing and technical pools
(`app.ops.pools.pool_specs()` under `app.ops.supervisor.Supervisor`). A beat-equivalent in the
driver calls `app.orchestration.reconciler.republish_unpublished(min_age_s=5)` and `redispatch_stale(lease)`
every few seconds. One fault is injected mid-burst:

1. kill_worker        kill -9 the billing worker's process group, then start it again
2. rabbitmq_restart   stop_app / start_app of the private RabbitMQ (submissions go on meanwhile)
3. postgres_restart   immediate stop / start of the private PostgreSQL (submissions retried by key)
4. provider_outage    /admin/faults outage_seconds at the simulator
5. poison             one `[[sim:fail]]` ticket among good ones
6. idempotency_storm  one idempotency key submitted 20 times at once from 20 threads

Every service stopped is restored; then the driver waits until every submitted request is terminal
(succeeded / dead_lettered) or a deadline, and counts from the private database:

- submitted, succeeded, dead_lettered, lost (submitted ids not terminal at the deadline, or missing);
- duplicated_side_effects: deliveries beyond one per request + refund rows beyond one per
  (request, invoice) + refund rows beyond one per invoice across requests;
- repaid_llm_calls: paid (ok, not cached) LLM calls of a step made after that step had already
  succeeded (written in another transaction than its checkpoint, after its finished_at): a finished
  step run again after a redelivery;
- unrecorded_llm_calls: answers the provider gave (HTTP 200) that are not in llm_calls (paid for,
  not in the record). A call's row is written before the call, so one whose worker died before
  completing it is in the record as in flight, or in doubt once the reconciler's lease passed;
- in_doubt_llm_calls / in_doubt_usd: those rows at the end, and their estimated cost.

Progress goes to stderr; the last stdout line is `{"scenarios": [...]}`. Each scenario runs in a
subprocess of its own (`--child`), so cached settings, engines and Celery apps start clean.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/faults.py`: make `bench.*` and `app.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import (
    REPO,
    child_env,
    free_port,
    install_signal_handlers,
    log,
    run_id,
    scratch_database,
    scratch_vhost,
    wait_http,
)
from bench.private_services import PrivatePostgres, PrivateRabbitMQ, PrivateStack

SCENARIOS = ("kill_worker", "rabbitmq_restart", "postgres_restart", "provider_outage", "poison", "idempotency_storm")
# What each scenario restarts: without that private service it is skipped, never run on the shared one.
NEEDS_PRIVATE = {"rabbitmq_restart": "rabbitmq", "postgres_restart": "postgres"}
STORM_THREADS = 20
# Where a request rests: finished, or parked durably for a person (a refund above the approval
# limit, a customer asking for a person); neither is lost.
TERMINAL = ("succeeded", "dead_lettered", "awaiting_approval", "needs_human")


@dataclass
class Options:
    tickets: int = 60
    outage_s: float = 30.0
    latency_ms: float = 100.0
    # Tickets submitted per second (the burst), by `submit_threads` client threads.
    submit_rate: float = 12.0
    submit_threads: int = 4
    # How long RabbitMQ / PostgreSQL / the billing worker stay down.
    down_s: float = 5.0
    # Waiting for every request to be terminal, counted from the end of the burst and the fault;
    # and giving up earlier when no request changed status for `stall_s` (0: lease_s + 30).
    deadline_s: float = 240.0
    stall_s: float = 0.0
    # The beat-equivalent: how often, and the lease of redispatch_stale.
    reconcile_every_s: float = 2.0
    republish_min_age_s: float = 5.0
    lease_s: float = 60.0
    # Extra SWITCHBOARD_* settings for the scenario's processes.
    env: dict[str, str] = field(default_factory=dict)
    seed: int = 42


# ==================================================================================================
# Driver side: services, vhost + database per scenario, one child process per scenario
# ==================================================================================================


def _skip(name: str, reason: str) -> dict[str, Any]:
    log(f"{name}: skipped: {reason}")
    return {"name": name, "skipped": reason}


@contextlib.contextmanager
def _scenario_services(name: str, stack: PrivateStack | None, run: str) -> Iterator[dict[str, Any]]:
    """A fresh vhost and database for one scenario: on the private services, or, for a scenario
    that restarts neither of them and only when a private one cannot start, scratch ones on the
    shared services (created and dropped, never restarted)."""
    vhost, db = f"sbfault-{name}-{run}", f"sbfault_{name}_{run}"
    with contextlib.ExitStack() as es:
        services: dict[str, Any] = {}
        if stack is not None and stack.rabbit is not None:
            services["broker_url"] = es.enter_context(stack.rabbit.vhost(vhost))
            services["rabbit"] = stack.rabbit.describe()
        else:
            services["broker_url"] = es.enter_context(scratch_vhost(vhost))
            services["broker_origin"] = "shared (scratch vhost)"
        if stack is not None and stack.pg is not None:
            services["database_url"] = es.enter_context(stack.pg.database(db))
            services["pg"] = stack.pg.describe()
        else:
            services["database_url"] = es.enter_context(scratch_database(db))
            services["database_origin"] = "shared (scratch database)"
        yield services


def _scenario_env(services: dict[str, Any], opts: Options) -> dict[str, str]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return {
        **base,
        **child_env({}),
        "SWITCHBOARD_BROKER_URL": services["broker_url"],
        "SWITCHBOARD_DATABASE_URL": services["database_url"],
        "SWITCHBOARD_SIMULATOR_PORT": str(port),
        "SWITCHBOARD_PROVIDER_BASE_URL": f"http://127.0.0.1:{port}/v1",
        **opts.env,
    }


def run_scenario(name: str, stack: PrivateStack | None, opts: Options, log_dir: Path) -> dict[str, Any]:
    """One scenario in a child process on fresh vhost + database; returns its result dict."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    needed = NEEDS_PRIVATE.get(name)
    if needed == "rabbitmq" and (stack is None or stack.rabbit is None):
        return _skip(name, (stack.rabbit_error if stack else None) or "no private RabbitMQ node")
    if needed == "postgres" and (stack is None or stack.pg is None):
        return _skip(name, (stack.pg_error if stack else None) or "no private PostgreSQL cluster")
    run = run_id()
    scenario_logs = log_dir / f"{name}-{run}"
    scenario_logs.mkdir(parents=True, exist_ok=True)
    with _scenario_services(name, stack, run) as services:
        spec = {"name": name, "options": asdict(opts), "services": services, "log_dir": str(scenario_logs)}
        env = _scenario_env(services, opts)
        started = time.monotonic()
        # Its own session, so a timeout can end it and (through its signal handler) its workers.
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.faults", "--child", json.dumps(spec)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=None, text=True, start_new_session=True,
        )
        budget = opts.deadline_s + opts.outage_s + opts.tickets / max(opts.submit_rate, 0.1) + 300
        try:
            out, _ = child.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            _stop_child(child)
            return {"name": name, "error": f"scenario did not finish within {budget:.0f}s", "logs": str(scenario_logs)}
        except BaseException:  # interrupted (Ctrl-C, SIGTERM, a test timeout): stop it and its workers
            _stop_child(child)
            raise
        lines = [line for line in (out or "").splitlines() if line.strip().startswith("{")]
        if child.returncode != 0 or not lines:
            return {"name": name, "error": f"scenario process exited {child.returncode}", "logs": str(scenario_logs)}
        result = json.loads(lines[-1])
        result["wall_s"] = round(time.monotonic() - started, 1)
        result.setdefault("services", "private" if stack and stack.pg and stack.rabbit else "mixed")
        result["logs"] = str(scenario_logs)
        (scenario_logs / "result.json").write_text(json.dumps(result, indent=2, default=str))
        return result


def _stop_child(child: subprocess.Popen[str]) -> None:
    """SIGTERM: the child's handler stops its workers (they run in sessions of their own); SIGKILL
    to the child's own process group if it does not exit."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()


def run_all(names: list[str], opts: Options, log_dir: Path) -> list[dict[str, Any]]:
    results = []
    with PrivateStack() as stack:
        for name in names:
            log(f"=== scenario {name} ===")
            result = run_scenario(name, stack, opts, log_dir)
            log(f"{name}: {json.dumps({k: result.get(k) for k in _HEADLINE})}")
            results.append(result)
    return results


_HEADLINE = ("submitted", "succeeded", "dead_lettered", "lost", "duplicated_side_effects", "repaid_llm_calls",
             "unrecorded_llm_calls", "in_doubt_llm_calls", "ok", "skipped", "error")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/faults.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON document on stdout")
    parser.add_argument("--tickets", type=int, default=60)
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    parser.add_argument("--deadline-seconds", type=float, default=240.0)
    parser.add_argument("--lease-seconds", type=float, default=60.0, help="redispatch_stale lease")
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(json.loads(args.child))
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    if args.tickets < 4:
        parser.error("--tickets must be at least 4")
    install_signal_handlers()
    opts = Options(tickets=args.tickets, outage_s=args.outage_seconds, deadline_s=args.deadline_seconds,
                   lease_s=args.lease_seconds)
    log_dir = Path(args.log_dir) if args.log_dir else REPO / ".switchboard" / f"faults-{run_id()}"
    started = time.monotonic()
    results = run_all(names, opts, log_dir)
    if not args.json:
        for r in results:
            print("  ".join(f"{k}={r.get(k)}" for k in ("name", *_HEADLINE) if k in r))
    log(f"all scenarios in {time.monotonic() - started:.0f}s; logs in {log_dir}")
    print(json.dumps({"scenarios": results}))
    return 0 if all(r.get("ok") or r.get("skipped") for r in results) else 1


# ==================================================================================================
# Child side: one scenario, with SWITCHBOARD_* already pointing at its vhost and database
# ==================================================================================================


class Reconciler:
    """The beat-equivalent: publishes unpublished requests and redispatches stale ones, tolerating
    the broker or the database being down (it just tries again next round)."""

    def __init__(self, every_s: float, min_age_s: float, lease_s: float) -> None:
        self.every_s, self.min_age_s, self.lease_s = every_s, min_age_s, lease_s
        self.republished = 0
        self.redispatched = 0
        self.in_doubt = 0
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="reconciler")

    def start(self) -> Reconciler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        from app.orchestration.reconciler import mark_in_doubt, redispatch_stale, republish_unpublished

        while not self._stop.wait(self.every_s):
            try:
                self.republished += republish_unpublished(min_age_s=self.min_age_s)
            except Exception as exc:  # broker or database down: next round
                self.errors[type(exc).__name__] += 1
            try:
                self.redispatched += redispatch_stale(lease_s=self.lease_s)
                self.in_doubt += mark_in_doubt(lease_s=self.lease_s)
            except Exception as exc:
                self.errors[type(exc).__name__] += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # never started when the scenario failed before it
            self._thread.join(timeout=30)


@dataclass
class Submitted:
    ids: dict[str, str] = field(default_factory=dict)  # idempotency key -> request id
    refused: dict[str, str] = field(default_factory=dict)  # key -> last error, never accepted
    unpublished: int = 0  # accepted but not published at submit time (the reconciler's job)
    retried: int = 0  # submit calls that raised and were retried with the same key
    lock: threading.Lock = field(default_factory=threading.Lock)


def _submit(sub: Submitted, key: str, text: str, tenant: str, priority: str, give_up_at: float,
            metadata: dict[str, Any], customer: str | None = None) -> str | None:
    """client.submit, retried with the same idempotency key while it raises (a database outage):
    what a careful caller does, and safe because the key makes a repeat return the first request."""
    from app.ingress import client

    delay = 0.2
    while True:
        try:
            s = client.submit(text, tenant=tenant, customer=customer, priority=priority, idempotency_key=key,
                              metadata=metadata)
        except client.Refused:  # invalid or overloaded: trying again the same way cannot help
            raise
        except Exception as exc:
            if time.monotonic() > give_up_at:
                with sub.lock:
                    sub.refused[key] = f"{type(exc).__name__}: {exc}"[:300]
                return None
            with sub.lock:
                sub.retried += 1
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        with sub.lock:
            sub.ids[key] = s.id
            sub.unpublished += 0 if s.published else 1
        return s.id


def _refundable_invoices(session: Any) -> list[str]:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from specialists.billing.models import Invoice
    from specialists.billing.policy import REFUND_APPROVAL_LIMIT

    # Refunds that run unattended: above the default approval limit one waits for a person.
    limit = REFUND_APPROVAL_LIMIT.parse(REFUND_APPROVAL_LIMIT.default)
    cutoff = datetime.now(UTC) - timedelta(days=25)
    return list(session.scalars(
        select(Invoice.id).where(Invoice.status == "paid", Invoice.issued_at > cutoff, Invoice.amount_usd <= limit)
        .order_by(Invoice.id)
    ))


def _tickets(n: int, emails: list[str], invoices: list[str], refundable: list[str], seed: int,
             owners: dict[str, str]) -> list[dict[str, Any]]:
    """The Monday-morning surge, with about one ticket in six replaced by an explicit refund request
    for a refundable invoice, two of them for the same invoice (only one may be paid). Each comes
    from the seeded customer it is about, as the demo submits them."""
    from app.ops.surge import monday_morning
    from specialists.billing.seed import DEMO_TENANT

    surge = monday_morning(n, emails=emails, invoice_ids=invoices, seed=seed, owners=owners,
                           tenant=DEMO_TENANT)
    tickets = [{"text": t.text, "tenant": t.tenant, "priority": t.priority, "expected": t.expected,
                "customer": t.customer} for t in surge]
    if refundable:
        slots = list(range(1, n, 6))
        for j, i in enumerate(slots):
            invoice = refundable[j % len(refundable)] if j != 1 else refundable[0]  # 0 and 1: same invoice
            tickets[i] = {
                "text": f"Please refund {invoice}, we were charged for a plan we switched away from the same day.",
                "tenant": tickets[i]["tenant"], "priority": tickets[i]["priority"], "expected": "billing",
                "customer": owners.get(invoice),
            }
    return tickets


def _status_counts(ids: list[str]) -> Counter[str]:
    from sqlalchemy import func, select

    from app.state import Request, session_scope

    with session_scope() as session:
        rows = session.execute(
            select(Request.status, func.count()).where(Request.id.in_(ids)).group_by(Request.status)
        ).all()
    return Counter({status: n for status, n in rows})


def _wait_for(predicate: Any, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        time.sleep(every)
    return False


class Fault:
    """Injects the scenario's one fault (in its own thread, so submissions go on meanwhile)."""

    def __init__(self, name: str, opts: Options, services: dict[str, Any], supervisor: Any, sim_base: str,
                 sub: Submitted, run: str) -> None:
        self.name, self.opts, self.services, self.sup = name, opts, services, supervisor
        self.sim_base, self.sub, self.run = sim_base, sub, run
        self.info: dict[str, Any] = {}
        self.error: str | None = None
        self.done = threading.Event()
        # Set once the fault is in effect (worker dead, broker or database down, provider out...):
        # the rest of the burst is submitted from then on, i.e. during the fault.
        self.in_effect = threading.Event()
        self.in_effect_at: float | None = None

    def _now_in_effect(self) -> None:
        if not self.in_effect.is_set():
            self.in_effect_at = time.monotonic()
            self.in_effect.set()

    def inject(self) -> None:
        started = time.monotonic()
        try:
            getattr(self, f"_{self.name}")()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log(f"{self.name}: fault injection failed: {self.error}")
        finally:
            self._now_in_effect()
            self.info["duration_s"] = round(time.monotonic() - started, 2)
            self.done.set()

    def _kill_worker(self) -> None:
        from sqlalchemy import func, select

        from app.state import Request, session_scope
        from app.ops.supervisor import wait_for_workers

        def billing_busy() -> bool:
            with session_scope() as session:
                return (session.scalar(select(func.count()).select_from(Request).where(
                    Request.specialist == "billing", Request.status == "running")) or 0) > 0

        # Mid-task: wait (briefly) until the billing pool is running something.
        self.info["billing_running_at_kill"] = _wait_for(billing_busy, 15.0, 0.05)
        process = self.sup.processes["billing"]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self._now_in_effect()
        log(f"kill_worker: killed billing worker pid {process.pid} (kill -9 of its process group)")
        time.sleep(self.opts.down_s)
        self.sup.start(self.sup.specs["billing"])
        wait_for_workers(["billing"], timeout=90)
        log("kill_worker: billing worker started again")

    def _rabbitmq_restart(self) -> None:
        rabbit = PrivateRabbitMQ.attach(self.services["rabbit"])
        log(f"rabbitmq_restart: stop_app on {rabbit.node}")
        rabbit.stop_app()
        self._now_in_effect()
        time.sleep(self.opts.down_s)
        rabbit.start_app()
        log("rabbitmq_restart: start_app done")

    def _postgres_restart(self) -> None:
        pg = PrivatePostgres.attach(self.services["pg"])
        log(f"postgres_restart: immediate stop of 127.0.0.1:{pg.port}")
        pg.stop(mode="immediate")
        self._now_in_effect()
        time.sleep(self.opts.down_s)
        pg.start()
        log("postgres_restart: started again")

    def _provider_outage(self) -> None:
        import httpx

        # On a loaded machine the workers may make no call within a short outage; the scenario
        # means "calls fail mid-burst", so the outage lasts until calls have hit it (at most 6x).
        for rounds in range(1, 7):
            httpx.post(f"{self.sim_base}/admin/faults", json={"outage_seconds": self.opts.outage_s}, timeout=10)
            self._now_in_effect()
            log(f"provider_outage: {self.opts.outage_s:g}s outage at the simulator (round {rounds})")
            time.sleep(self.opts.outage_s)
            hits = httpx_get_json(f"{self.sim_base}/admin/stats").get("faults_injected", {}).get("outage", 0)
            if hits:
                break
        self.info["outage_rounds"] = rounds

    def _poison(self) -> None:
        from app.ops.surge import POISON_TEXT

        key = f"{self.run}-poison"
        rid = _submit(self.sub, key, POISON_TEXT, "acme", "normal", time.monotonic() + 120,
                      {"fault_run": self.run, "poison": True})
        self.info["poison_id"] = rid
        log(f"poison: submitted {rid}")

    def _idempotency_storm(self) -> None:
        key = f"{self.run}-storm"
        text = "Please refund the duplicate charge on our card this month; account maria.gonzalez@example.com."
        barrier = threading.Barrier(STORM_THREADS)
        ids: list[str | None] = [None] * STORM_THREADS

        def one(i: int) -> None:
            barrier.wait()
            ids[i] = _submit(self.sub, key, text, "globex", "normal", time.monotonic() + 120, {"fault_run": self.run})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(STORM_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.info["storm_key"] = key
        self.info["storm_distinct_ids"] = len({i for i in ids if i})
        self.info["storm_id"] = next((i for i in ids if i), None)
        log(f"idempotency_storm: {STORM_THREADS} submissions -> {self.info['storm_distinct_ids']} id(s)")


def _measure(db_url: str, ids: list[str], sim_stats: dict[str, Any], broker_url: str,
             timeline_ids: list[str] | None = None) -> dict[str, Any]:
    """Counts for the scenario, from its private database (and its broker's dead-letter queues)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

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
        "queues": _queue_counts(broker_url),
        "stuck_examples": stuck,
        "_runs": runs,
        "_timelines": timelines,
        "_status": {r.id: r.status for r in rows},
    }


def _queue_counts(broker_url: str) -> dict[str, Any] | str:
    """Ready messages (and consumers) per work queue and dead-letter queue at the end: a request
    whose message still sits in a work queue nobody consumes shows here."""
    try:
        from kombu import Connection

        from app.orchestration.topology import dlq_name, work_queue_names

        counts: dict[str, Any] = {}
        with Connection(broker_url, connect_timeout=5) as conn:
            channel = conn.channel()
            for queue in work_queue_names():
                ok = channel.queue_declare(queue, passive=True)
                counts[queue] = {"ready": ok.message_count, "consumers": ok.consumer_count}
                counts[dlq_name(queue)] = channel.queue_declare(dlq_name(queue), passive=True).message_count
        return counts
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"


def _child_main(spec: dict[str, Any]) -> int:
    install_signal_handlers()
    result = run_child(spec)
    print(json.dumps(result, default=str), flush=True)
    return 0


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    name = spec["name"]
    opts = Options(**spec["options"])
    services = spec["services"]
    log_dir = Path(spec["log_dir"])
    run = run_id()

    from app.config import get_settings
    from app.state import dispose_engine, session_scope
    from app.ops.migrate import upgrade
    from app.ops.seeding import seed_enabled
    from app.ops.pools import pool_specs, simulator_spec
    from app.ops.supervisor import Supervisor, wait_for_workers
    from app.orchestration.topology import work_queue_names
    from specialists.billing.seed import account_emails, invoice_ids, invoice_owners

    settings = get_settings()
    upgrade(services["database_url"])
    with session_scope() as session:
        seed_enabled(session)
        emails, invoices, owners = account_emails(session), invoice_ids(session), invoice_owners(session)
        refundable = _refundable_invoices(session)
    tickets = _tickets(opts.tickets, emails, invoices, refundable, opts.seed, owners)
    sim_base = f"http://127.0.0.1:{settings.simulator_port}"
    sub = Submitted()
    result: dict[str, Any] = {"name": name, "tickets": opts.tickets}
    supervisor = Supervisor(log_dir, restart=False)
    reconciler = Reconciler(opts.reconcile_every_s, opts.republish_min_age_s, opts.lease_s)
    try:
        supervisor.start(simulator_spec(settings, "--latency-ms", str(opts.latency_ms)))
        wait_http(f"{sim_base}/healthz", 30)
        for pool in pool_specs(settings):
            supervisor.start(pool)
        wait_for_workers(work_queue_names(), timeout=120)
        log(f"{name}: pools up, {len(tickets)} tickets ({sum(1 for t in tickets if 'Please refund' in t['text'])} "
            "explicit refunds) at "
            f"{opts.submit_rate:g}/s")
        reconciler.start()

        fault = Fault(name, opts, services, supervisor, sim_base, sub, run)
        fault_at = max(1, len(tickets) // 3)
        fault_thread = threading.Thread(target=fault.inject, name="fault", daemon=True)
        burst_started = time.monotonic()
        give_up_at = burst_started + opts.deadline_s

        def send(i: int) -> None:
            if i < fault_at:
                due = burst_started + i / opts.submit_rate
            else:
                if i == fault_at:
                    result["fault_at_s"] = round(time.monotonic() - burst_started, 2)
                    log(f"{name}: injecting the fault after {i} submissions")
                    fault_thread.start()
                # The rest of the burst goes out while the fault is in effect.
                fault.in_effect.wait(timeout=opts.outage_s + opts.down_s + 120)
                due = (fault.in_effect_at or time.monotonic()) + (i - fault_at) / opts.submit_rate
            time.sleep(max(0.0, due - time.monotonic()))
            t = tickets[i]
            _submit(sub, f"{run}-{i}", t["text"], t["tenant"], t["priority"], give_up_at,
                    {"fault_run": run, "ticket": i}, t["customer"])

        with ThreadPoolExecutor(opts.submit_threads, thread_name_prefix="submit") as pool:
            list(pool.map(send, range(len(tickets))))
        result["burst_s"] = round(time.monotonic() - burst_started, 2)
        fault_thread.join(timeout=opts.outage_s + opts.down_s + 300)
        log(f"{name}: burst submitted in {result['burst_s']}s; fault done ({fault.info}); waiting for the requests")

        ids = sorted(set(sub.ids.values()))
        deadline = time.monotonic() + opts.deadline_s
        stall_s = opts.stall_s or opts.lease_s + 30
        last_log = 0.0
        counts: Counter[str] = Counter()
        last_change, last_counts = time.monotonic(), None
        result["stalled"] = False
        while time.monotonic() < deadline:
            try:
                counts = _status_counts(ids)
            except Exception as exc:
                log(f"{name}: status poll failed ({type(exc).__name__}); retrying")
                time.sleep(1)
                continue
            terminal = sum(counts.get(status, 0) for status in TERMINAL)
            if time.monotonic() - last_log > 5:
                log(f"{name}: {terminal}/{len(ids)} terminal {dict(counts)}")
                last_log = time.monotonic()
            if terminal >= len(ids):
                break
            if counts != last_counts:
                last_change, last_counts = time.monotonic(), counts
            elif time.monotonic() - last_change > stall_s:
                log(f"{name}: no request changed status for {stall_s:g}s; giving up waiting")
                result["stalled"] = True
                break
            time.sleep(0.5)
        result["drain_s"] = round(time.monotonic() - burst_started, 2)
        log(f"{name}: {dict(counts)} after {result['drain_s']}s; measuring")
        # Let a duplicate attempt still in flight finish, so its side effects are counted too.
        _wait_for(lambda: httpx_get_json(f"{sim_base}/admin/stats").get("in_flight", 1) == 0, 15.0, 0.5)
        time.sleep(2.0)
        sim_stats = httpx_get_json(f"{sim_base}/admin/stats")
        result["workers"] = _worker_diagnostics()
        special = [i for i in (fault.info.get("poison_id"), fault.info.get("storm_id")) if i]
        measured = _measure(services["database_url"], ids, sim_stats, services["broker_url"], special)
        runs, status, timelines = measured.pop("_runs"), measured.pop("_status"), measured.pop("_timelines")
        log(f"{name}: measured; stopping the pools")
        result.update({
            "submitted": len(ids),
            **measured,
            "refused_submissions": len(sub.refused),
            "refused_examples": list(sub.refused.values())[:3],
            "submit_retries": sub.retried,
            "unpublished_at_submit": sub.unpublished,
            "reconciler": {"republished": reconciler.republished, "redispatched": reconciler.redispatched,
                           "llm_calls_in_doubt": reconciler.in_doubt, "errors": dict(reconciler.errors), "lease_s": opts.lease_s},
            "fault": {**fault.info, **({"error": fault.error} if fault.error else {})},
        })
        poison_id = fault.info.get("poison_id")
        storm_id = fault.info.get("storm_id")
        if poison_id:
            result["poison_status"] = status.get(poison_id, "missing")
            result["poison_events"] = timelines.get(poison_id, [])
        if storm_id:
            result["storm"] = {"submissions": STORM_THREADS, "distinct_ids": fault.info["storm_distinct_ids"],
                               "status": status.get(storm_id, "missing"), "runs": runs.get(storm_id, 0),
                               "events": timelines.get(storm_id, [])}
        others = [i for i in ids if i != poison_id]
        result["others_succeeded"] = sum(1 for i in others if status.get(i) == "succeeded")
        result["others"] = len(others)
        result["ok"] = bool(
            result["lost"] == 0
            and result["duplicated_side_effects"] == 0
            and result["unrecorded_llm_calls"] == 0
            and result["others_succeeded"] == len(others)
            and (poison_id is None or result["poison_status"] == "dead_lettered")
            and not sub.refused
            and fault.error is None
            # One request, run once.
            and (storm_id is None or (result["storm"]["distinct_ids"] == 1 and result["storm"]["runs"] == 1))
        )
        return result
    except KeyboardInterrupt:
        result["error"] = "interrupted"
        return result
    finally:
        reconciler.stop()
        supervisor.stop(timeout=10)
        with contextlib.suppress(Exception):
            dispose_engine()


def _worker_diagnostics() -> dict[str, Any] | str:
    """Each pool's own view at the end: its prefetch count and how many tasks it holds. A pool that
    holds nothing while its queue has ready messages has stopped consuming."""
    try:
        from app.orchestration.celery_app import celery

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
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"


def httpx_get_json(url: str) -> dict[str, Any]:
    import httpx

    try:
        return httpx.get(url, timeout=5).json()
    except Exception:
        return {}


if __name__ == "__main__":
    raise SystemExit(main())
