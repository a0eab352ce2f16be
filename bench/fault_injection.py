"""The child side of bench/faults.py: the tickets it submits, how it submits them, and the one fault it injects.

Runs only in a scenario's child process (bench/fault_child.py), whose SWITCHBOARD_* settings point
at the scenario's own vhost and database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from app.ingress import client
from app.ops.supervisor import wait_for_workers
from app.ops.surge import POISON_TEXT, monday_morning
from app.state import Request, session_scope
from bench._harness import log
from bench.fault_measure import httpx_get_json
from bench.faults import STORM_THREADS, Options
from bench.private_services import PrivatePostgres, PrivateRabbitMQ
from specialists.billing.models import Invoice
from specialists.billing.policy import REFUND_APPROVAL_LIMIT
from specialists.billing.seed import DEMO_TENANT


@dataclass
class Submitted:
    ids: dict[str, str] = field(default_factory=dict)  # idempotency key -> request id
    refused: dict[str, str] = field(default_factory=dict)  # key -> last error, never accepted
    unpublished: int = 0  # accepted but not published at submit time (the reconciler's job)
    retried: int = 0  # submit calls that raised and were retried with the same key
    lock: threading.Lock = field(default_factory=threading.Lock)


def submit(sub: Submitted, key: str, text: str, tenant: str, priority: str, give_up_at: float,
           metadata: dict[str, Any], customer: str | None = None) -> str | None:
    """client.submit, retried with the same idempotency key while it raises (a database outage):
    what a careful caller does, and safe because the key makes a repeat return the first request."""

    delay = 0.2
    while True:
        try:
            s = client.submit(text, tenant=tenant, customer=customer, priority=priority, idempotency_key=key,
                              metadata=metadata)
        except client.Refused:  # invalid or overloaded: trying again the same way cannot help
            raise
        except Exception as exc:  # noqa: BLE001 - a fault is under way: try again until the deadline
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


def refundable_invoices(session: Any) -> list[str]:
    # Refunds that run unattended: above the default approval limit one waits for a person.
    limit = REFUND_APPROVAL_LIMIT.parse(REFUND_APPROVAL_LIMIT.default)
    cutoff = datetime.now(UTC) - timedelta(days=25)
    return list(session.scalars(
        select(Invoice.id).where(Invoice.status == "paid", Invoice.issued_at > cutoff, Invoice.amount_usd <= limit)
        .order_by(Invoice.id)
    ))


def surge_tickets(n: int, emails: list[str], invoices: list[str], refundable: list[str], seed: int,
                  owners: dict[str, str]) -> list[dict[str, Any]]:
    """The Monday-morning surge, with about one ticket in six replaced by an explicit refund request
    for a refundable invoice, two of them for the same invoice (only one may be paid). Each comes
    from the seeded customer it is about, as the demo submits them."""

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


def status_counts(ids: list[str]) -> Counter[str]:
    with session_scope() as session:
        rows = session.execute(
            select(Request.status, func.count()).where(Request.id.in_(ids)).group_by(Request.status)
        ).all()
    return Counter({status: n for status, n in rows})


def wait_for(predicate: Any, timeout: float, every: float = 0.2) -> bool:
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
        except Exception as exc:  # noqa: BLE001 - a failed injection is reported, not raised
            self.error = f"{type(exc).__name__}: {exc}"
            log(f"{self.name}: fault injection failed: {self.error}")
        finally:
            self._now_in_effect()
            self.info["duration_s"] = round(time.monotonic() - started, 2)
            self.done.set()

    def _kill_worker(self) -> None:
        def billing_busy() -> bool:
            with session_scope() as session:
                return (session.scalar(select(func.count()).select_from(Request).where(
                    Request.specialist == "billing", Request.status == "running")) or 0) > 0

        # Mid-task: wait (briefly) until the billing pool is running something.
        self.info["billing_running_at_kill"] = wait_for(billing_busy, 15.0, 0.05)
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
        key = f"{self.run}-poison"
        rid = submit(self.sub, key, POISON_TEXT, "acme", "normal", time.monotonic() + 120,
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
            ids[i] = submit(self.sub, key, text, "globex", "normal", time.monotonic() + 120, {"fault_run": self.run})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(STORM_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.info["storm_key"] = key
        self.info["storm_distinct_ids"] = len({i for i in ids if i})
        self.info["storm_id"] = next((i for i in ids if i), None)
        log(f"idempotency_storm: {STORM_THREADS} submissions -> {self.info['storm_distinct_ids']} id(s)")
