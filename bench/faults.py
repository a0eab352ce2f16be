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
subprocess of its own (bench/fault_child.py), so cached settings, engines and Celery apps start
clean; it injects the fault (bench/fault_injection.py) and counts (bench/fault_measure.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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
)
from bench.private_services import PrivateStack

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
# (the child: bench/fault_child.py)
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
            [sys.executable, "-m", "bench.fault_child", json.dumps(spec)],
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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
