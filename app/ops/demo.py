"""`switchboard demo`: the Monday-morning surge, end to end on this machine's services.

Migrates and seeds the record, starts the simulated provider and one worker pool per queue, submits
the surge plus one poison ticket, shows progress, prints a summary and stops what it started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from app.config import get_settings, reset_settings
from app.ingress import client
from app.observability.flower import flower_argv, flower_env
from app.observability.report import build as build_report
from app.observability.report import percentile, render_text
from app.observability.report_html import render_html
from app.ops.migrate import upgrade
from app.ops.pools import ProcessSpec, pool_specs, simulator_spec
from app.ops.preflight import check_services
from app.ops.seeding import seed_enabled
from app.ops.supervisor import Supervisor, wait_for_workers, wait_http
from app.ops.surge import POISON_TEXT, monday_morning
from app.orchestration.registry import RegistryError, specialists
from app.orchestration.topology import work_queue_names
from app.state import LlmCall, Request, session_scope
from app.state.models import TERMINAL, WAITING_ON_PERSON
from specialists.billing.seed import DEMO_TENANT, account_emails, invoice_ids, invoice_owners

STATE_DIR = Path(".switchboard")
RUNNING_FILE = STATE_DIR / "running.json"
# The simulated provider's limit in the demo (per key, across models): tight enough that the
# shared limiter has work to do, loose enough that the surge drains in well under a minute.
# `demo --rpm 100` runs the seed's own scenario instead: the surge against 100 requests a minute.
DEMO_RPM = 1200
# LLM calls a ticket makes at most (router, tools, answer), to give a limited run time to drain.
CALLS_PER_TICKET = 4


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def summarize(run_id: str, expected: dict[str, str]) -> dict[str, Any]:
    with session_scope() as session:
        rows = session.execute(
            select(
                Request.id,
                Request.status,
                Request.specialist,
                Request.route_method,
                Request.prompt_tokens,
                Request.completion_tokens,
                Request.cost_usd,
                Request.accepted_at,
                Request.finished_at,
            ).where(Request.metadata_["demo_run"].astext == run_id)
        ).all()
    by: dict[str, dict[str, int]] = {}
    methods: dict[str, int] = {}
    latencies = []
    for r in rows:
        by.setdefault(r.specialist or "unrouted", {}).setdefault(r.status, 0)
        by[r.specialist or "unrouted"][r.status] += 1
        methods[r.route_method or "none"] = methods.get(r.route_method or "none", 0) + 1
        if r.status == "succeeded" and r.finished_at:
            latencies.append((r.finished_at - r.accepted_at).total_seconds())
    with session_scope() as session:
        calls = session.execute(
            select(LlmCall.cache_hit, func.count())
            .join(Request, Request.id == LlmCall.request_id)
            .where(Request.metadata_["demo_run"].astext == run_id, LlmCall.outcome == "ok")
            .group_by(LlmCall.cache_hit)
        ).all()
    by_cache = {bool(hit): n for hit, n in calls}
    routed_right = sum(1 for r in rows if r.id in expected and r.specialist == expected[r.id])
    succeeded = sum(1 for r in rows if r.status == "succeeded")
    dead = sum(1 for r in rows if r.status == "dead_lettered")
    # A refund above the approval limit waits for a person: accounted for, and listed by
    # `switchboard approvals list` / `switchboard inbox`.
    waiting = sum(1 for r in rows if r.status in WAITING_ON_PERSON)
    return {
        "submitted": len(expected),
        "recorded": len(rows),
        "succeeded": succeeded,
        "dead_lettered": dead,
        "waiting_on_person": waiting,
        "unaccounted": len(expected) - succeeded - dead - waiting,
        "by_specialist": by,
        "routing_methods": methods,
        "routing_accuracy": round(routed_right / max(1, sum(1 for r in rows if r.id in expected)), 3),
        "latency_s": {"p50": percentile(latencies, 50, 3), "p95": percentile(latencies, 95, 3)},
        "llm_calls": by_cache.get(False, 0),
        "cache_hits": by_cache.get(True, 0),
        "tokens": sum(r.prompt_tokens + r.completion_tokens for r in rows),
        "cost_usd": float(sum(r.cost_usd for r in rows)),
    }


def _print_summary(summary: dict[str, Any], poison_id: str, poison_status: str) -> None:
    print("\nSwitchboard demo: the Monday-morning surge")
    print(
        f"  submitted {summary['submitted']}, succeeded {summary['succeeded']}, "
        f"dead-lettered {summary['dead_lettered']}, waiting on a person {summary['waiting_on_person']}, "
        f"unaccounted {summary['unaccounted']}"
    )
    for specialist, statuses in sorted(summary["by_specialist"].items()):
        print(f"  {specialist:<12} " + ", ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
    print(
        f"  routing: {summary['routing_methods']}, accuracy against the surge's labels "
        f"{summary['routing_accuracy']:.1%}"
    )
    lat = summary["latency_s"]
    print(f"  end-to-end latency p50 {lat['p50']}s, p95 {lat['p95']}s")
    print(
        f"  LLM calls {summary['llm_calls']:,} (+{summary['cache_hits']:,} answered from the cache), "
        f"tokens {summary['tokens']:,}, cost ${summary['cost_usd']:.4f}"
    )
    print(f"  poison ticket {poison_id}: {poison_status} (see `switchboard dlq show {poison_id}`)")


def run_demo(
    tickets: int = 200,
    *,
    keep_running: bool = False,
    as_json: bool = False,
    rpm: int | None = None,
    tpm: int | None = None,
) -> int:
    """The surge against the simulated provider; `rpm`/`tpm` are the limits it enforces per key
    across models, which the fleet is then configured with (default: DEMO_RPM, no token limit)."""
    # The `demo` extra's progress bar, loaded only for the surge: `demo --stop` works without it.
    from tqdm import tqdm  # noqa: PLC0415

    if tickets < 1:
        raise ValueError("--tickets must be at least 1")
    if not {"billing", "technical"} <= set(specialists()):
        # The surge's tickets and its routing labels are the bundled examples'.
        raise RegistryError(
            "the demo runs the bundled billing and technical specialists: "
            "add `specialists` to SWITCHBOARD_SPECIALISTS"
        )
    if (rpm is not None and rpm < 1) or (tpm is not None and tpm < 1):
        raise ValueError("--rpm and --tpm must be at least 1")
    out = sys.stderr if as_json else sys.stdout
    check_services()
    upgrade()
    with session_scope() as session:
        seed_enabled(session)
        emails, invoices, owners = account_emails(session), invoice_ids(session), invoice_owners(session)

    run_id = uuid.uuid4().hex[:8]
    # The demo is development mode, explicitly: its pools use this machine's guest and postgres
    # accounts and the built-in development keys, which every process refuses outside it.
    os.environ["SWITCHBOARD_DEV"] = "true"
    port = _free_port(get_settings().simulator_port)
    os.environ["SWITCHBOARD_SIMULATOR_PORT"] = str(port)
    os.environ["SWITCHBOARD_PROVIDER_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
    # The simulated provider enforces a limit and the shared limiter keeps every pool under it:
    # the summary shows how many 429s that cost (none, when it works).
    if rpm is None:
        os.environ.setdefault("SWITCHBOARD_PROVIDER_RPM", str(DEMO_RPM))
    else:
        os.environ["SWITCHBOARD_PROVIDER_RPM"] = str(rpm)
    if tpm is not None:
        os.environ["SWITCHBOARD_PROVIDER_TPM"] = str(tpm)
    limit_rpm = rpm or DEMO_RPM
    limit_flags = ["--account-rpm", str(limit_rpm), *(["--account-tpm", str(tpm)] if tpm else [])]
    reset_settings()
    log_dir = STATE_DIR / f"demo-{run_id}"
    supervisor = Supervisor(log_dir)
    try:
        print(f"starting the simulated provider on :{port} and the worker pools (logs: {log_dir})", file=out)
        supervisor.start(
            simulator_spec(None, "--latency-ms", "150", "--latency-jitter-ms", "100", *limit_flags)
        )
        wait_http(f"http://127.0.0.1:{port}/healthz", 30)
        for spec in pool_specs():
            supervisor.start(spec)
        flower_url, source = _start_flower(supervisor)
        wait_for_workers(work_queue_names(), timeout=90)
        print(f"Flower at {flower_url} (credentials from {source})", file=out)

        # Submitted as the seeded accounts' own tenant and customers, as an app that signed its users
        # in would: each ticket's tools see the writer's account, so refunds of their own invoices go through.
        surge = monday_morning(
            tickets, emails=emails, invoice_ids=invoices, owners=owners, tenant=DEMO_TENANT
        )
        expected: dict[str, str] = {}
        poison_at = len(surge) // 2

        def send(i: int) -> str:
            if i == poison_at:
                return client.submit(
                    POISON_TEXT, tenant="acme", metadata={"demo_run": run_id, "poison": True}
                ).id
            t = surge[i if i < poison_at else i - 1]
            sub = client.submit(
                t.text,
                tenant=t.tenant,
                customer=t.customer,
                priority=t.priority,
                metadata={"demo_run": run_id},
            )
            expected[sub.id] = t.expected
            return sub.id

        with session_scope() as session:
            since = session.execute(
                select(func.now())
            ).scalar_one()  # the report covers this run, on the record's clock
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(send, range(len(surge) + 1)))
        poison_id = ids[poison_at]
        total = len(ids)
        with tqdm(total=total, desc="tickets finished", unit="ticket", file=out) as bar:
            # Room for the least time the limit allows (less headroom), twice over.
            least = tickets * CALLS_PER_TICKET / (limit_rpm * (1 - get_settings().provider_headroom)) * 60
            deadline = time.monotonic() + max(300, tickets * 3, 2 * least)
            done = 0
            while done < total and time.monotonic() < deadline:
                with session_scope() as session:
                    done = (
                        session.scalar(
                            select(func.count())
                            .select_from(Request)
                            .where(
                                Request.metadata_["demo_run"].astext == run_id,
                                Request.status.in_(list(TERMINAL | WAITING_ON_PERSON)),
                            )
                        )
                        or 0
                    )
                bar.update(done - bar.n)
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        summary = summarize(run_id, {**expected, poison_id: "billing"})
        poison_status = client.get(poison_id).status
        stats = httpx.get(f"http://127.0.0.1:{port}/admin/stats", timeout=5).json()
        summary.update(
            run_id=run_id,
            drain_s=round(elapsed, 2),
            poison_id=poison_id,
            poison_status=poison_status,
            provider_rpm_limit=limit_rpm,
            provider_tpm_limit=tpm,
            provider_429=stats.get("rate_limited", 0),
            provider_peak_rpm=stats.get("accepted_per_minute_max"),
        )
        report = build_report(since)
        html = (log_dir / "report.html").resolve()
        html.write_text(render_html(report), encoding="utf-8")
        summary.update(
            report_html=str(html),
            bottleneck=report.bottleneck.model_dump(mode="json") if report.bottleneck else None,
        )
        if as_json:
            print(json.dumps(summary))
        else:
            _print_summary(summary, poison_id, poison_status)
            print(
                f"  drained in {elapsed:.1f}s; provider limit {limit_rpm} requests/min per key across "
                f"models, peak "
                f"{summary['provider_peak_rpm']} in a minute, {summary['provider_429']} rate-limit rejections"
            )
            print("\n" + render_text(report))
            print(f"\nreport with charts: {html}")
        ok = summary["unaccounted"] == 0 and poison_status == "dead_lettered"
        if keep_running:
            _keep_running(supervisor, out)
        return 0 if ok else 1
    finally:
        if not keep_running:
            supervisor.stop()


def _start_flower(supervisor: Any) -> tuple[str, str]:
    """Flower as operators run it (basic auth, broker API) beside the demo's pools; returns its
    address and where its credentials come from."""
    os.environ["SWITCHBOARD_FLOWER_PORT"] = str(_free_port(get_settings().flower_port))
    reset_settings()
    settings = get_settings()
    if settings.flower_basic_auth is None:
        creds_file = STATE_DIR / "flower-credentials"
        if not creds_file.exists():
            creds_file.write_text(f"admin:{secrets.token_urlsafe(12)}\n")
            creds_file.chmod(0o600)
        os.environ["SWITCHBOARD_FLOWER_BASIC_AUTH"] = creds_file.read_text().strip()
        reset_settings()
        source = f"the file {creds_file} (user:password)"
    else:
        source = "SWITCHBOARD_FLOWER_BASIC_AUTH"
    supervisor.start(ProcessSpec("flower", flower_argv(), flower_env()))
    return f"http://127.0.0.1:{settings.flower_port}/", source


def _keep_running(supervisor: Any, out: Any) -> None:
    print(
        f"\nleft running: pools, simulated provider, Flower at http://127.0.0.1:{get_settings().flower_port}/; "
        f"logs in {supervisor.log_dir}",
        file=out,
    )
    pids = {name: p.pid for name, p in supervisor.processes.items()}
    RUNNING_FILE.write_text(json.dumps(pids))
    print("stop them with: switchboard demo --stop", file=out)


def stop_demo() -> int:
    """Warm shutdown of what `demo --keep-running` left up."""
    if not RUNNING_FILE.exists():
        print("nothing to stop: no demo was left running from this directory")
        return 0
    for name, pid in json.loads(RUNNING_FILE.read_text()).items():
        try:
            os.killpg(pid, signal.SIGTERM)
            print(f"stopping {name} (pid {pid})")
        except ProcessLookupError:
            pass
    RUNNING_FILE.unlink()
    return 0
