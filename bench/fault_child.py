"""One scenario of bench/faults.py, in a process of its own: `python -m bench.fault_child SPEC_JSON`.

The driver (bench/faults.py) starts it with SWITCHBOARD_* pointing at the scenario's vhost and
database, so cached settings, engines and Celery apps start clean; its last stdout line is the
scenario's result as JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.ops.migrate import upgrade
from app.ops.pools import pool_specs, simulator_spec
from app.ops.seeding import seed_enabled
from app.ops.supervisor import Supervisor, wait_for_workers
from app.orchestration.reconciler import mark_in_doubt, redispatch_stale, republish_unpublished
from app.orchestration.topology import work_queue_names
from app.state import dispose_engine, session_scope
from bench._harness import install_signal_handlers, log, run_id, wait_http
from bench.fault_injection import (
    Fault,
    Submitted,
    refundable_invoices,
    status_counts,
    submit,
    surge_tickets,
    wait_for,
)
from bench.fault_measure import httpx_get_json, measure, worker_diagnostics
from bench.faults import STORM_THREADS, TERMINAL, Options
from specialists.billing.seed import account_emails, invoice_ids, invoice_owners


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
        while not self._stop.wait(self.every_s):
            try:
                self.republished += republish_unpublished(min_age_s=self.min_age_s)
            except Exception as exc:  # noqa: BLE001 - broker or database down: next round
                self.errors[type(exc).__name__] += 1
            try:
                self.redispatched += redispatch_stale(lease_s=self.lease_s)
                self.in_doubt += mark_in_doubt(lease_s=self.lease_s)
            except Exception as exc:  # noqa: BLE001 - as above
                self.errors[type(exc).__name__] += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # never started when the scenario failed before it
            self._thread.join(timeout=30)


def child_main(spec: dict[str, Any]) -> int:
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


    settings = get_settings()
    upgrade(services["database_url"])
    with session_scope() as session:
        seed_enabled(session)
        emails, invoices, owners = account_emails(session), invoice_ids(session), invoice_owners(session)
        refundable = refundable_invoices(session)
    tickets = surge_tickets(opts.tickets, emails, invoices, refundable, opts.seed, owners)
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
            submit(sub, f"{run}-{i}", t["text"], t["tenant"], t["priority"], give_up_at,
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
                counts = status_counts(ids)
            except Exception as exc:  # noqa: BLE001 - a service is down on purpose: poll again
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
        wait_for(lambda: httpx_get_json(f"{sim_base}/admin/stats").get("in_flight", 1) == 0, 15.0, 0.5)
        time.sleep(2.0)
        sim_stats = httpx_get_json(f"{sim_base}/admin/stats")
        result["workers"] = worker_diagnostics()
        special = [i for i in (fault.info.get("poison_id"), fault.info.get("storm_id")) if i]
        measured = measure(services["database_url"], ids, sim_stats, services["broker_url"], special)
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


if __name__ == "__main__":
    raise SystemExit(child_main(json.loads(sys.argv[1])))
