"""The seed's Monday morning: a burst of tickets against a provider with a hard rate limit.

`python bench/surge.py --json [--tickets N] [--rpm R] [--tpm T] [--workers W] [--latency S]`

Tickets are submitted evenly over `--submit-s` seconds (200 in 60 s by default) to W specialist
worker processes on separate queues, against the simulated provider enforcing R requests and T
tokens a minute. Measured from the record and the provider's own counters:

- `provider_429`: rejections the provider answered (target 0);
- `drain_s`: first submission until every ticket is finished;
- `min_drain_s`: the least time the limit (less headroom) allows for the LLM calls and tokens the
  run really used, for the busiest model (the provider limits each model on its own);
  `drain_ratio` = drain_s / min_drain_s (target <= 1.1);
- `lost`: tickets not finished (succeeded or dead-lettered) at the deadline (target 0).

The same run is then repeated with the shared limiter off (each worker calls as fast as it can and
relies on retries), for comparison. Last line: one JSON object
{"tickets", "provider_429", "drain_s", "min_drain_s", "drain_ratio", "lost", ..., "limiter_off": {...}}.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h  # noqa: E402


def _phase(args: argparse.Namespace, *, limiter: bool) -> dict[str, Any]:
    run_id = h.run_id()
    with contextlib.ExitStack() as stack:
        sb = h.scratch_switchboard(stack, f"surge-{run_id}", {
            "SWITCHBOARD_PROVIDER_RPM": str(args.rpm if limiter else 0),
            "SWITCHBOARD_PROVIDER_TPM": str(args.tpm if limiter else 0),
            "SWITCHBOARD_SPECIALIST_CONCURRENCY": str(args.concurrency),
            "SWITCHBOARD_ROUTER_CONCURRENCY": "8",
        })
        env, port = sb.env, sb.simulator_port
        from app import client
        from app.celery_app import celery
        from app.config import get_settings
        from app.db import session_scope
        from app.ops.pools import concurrency_for, pool_specs, simulator_spec, worker_spec
        from app.ops.supervisor import Supervisor
        from app.ops.surge import monday_morning
        from app.registry import specialists
        from specialists.billing.seed import DEMO_TENANT, account_emails, invoice_ids, invoice_owners

        with session_scope() as session:
            emails, invoices, owners = account_emails(session), invoice_ids(session), invoice_owners(session)

        log_dir = Path(".switchboard") / f"bench-surge-{run_id}"
        supervisor = stack.enter_context(Supervisor(log_dir, env=h.child_env(env), restart=False))
        supervisor.start(simulator_spec(None, "--latency-ms", str(int(args.latency * 1000)),
                                        "--rpm", str(args.rpm), "--tpm", str(args.tpm)))
        h.wait_http(f"http://127.0.0.1:{port}/healthz")
        names = list(specialists())
        supervisor.start(pool_specs(queues=["router"])[0])
        workers = []
        settings = get_settings()
        for i in range(args.workers):
            # Processes of one pool are named as `scale` names them: billing, billing-2, ...
            queue = names[i % len(names)]
            spec = worker_spec(queue, concurrency_for(queue, settings), settings, index=i // len(names))
            supervisor.start(spec)
            workers.append(spec.name)
        h.wait_for_celery(celery, ["router", *workers], timeout=120)

        tickets = monday_morning(args.tickets, emails=emails, invoice_ids=invoices, owners=owners,
                                 tenant=DEMO_TENANT)
        h.log(f"limiter {'on' if limiter else 'off'}: {len(tickets)} tickets over {args.submit_s:g}s, provider "
              f"{args.rpm} RPM / {args.tpm} TPM, {args.workers} specialist worker processes")
        started = time.monotonic()
        ids = []
        for i, ticket in enumerate(tickets):
            delay = started + i * args.submit_s / len(tickets) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ids.append(client.submit(ticket.text, tenant=ticket.tenant, customer=ticket.customer,
                                     priority=ticket.priority).id)
        from sqlalchemy import func, select

        from app.db import LlmCall, Request

        deadline = started + args.deadline_s
        finished_at = None
        while time.monotonic() < deadline:
            with session_scope() as session:
                done = session.scalar(select(func.count()).select_from(Request).where(
                    Request.id.in_(ids),
                    # A refund above the approval limit rests until a person decides.
                    Request.status.in_(["succeeded", "dead_lettered", "awaiting_approval", "needs_human"]))) or 0
            if done == len(ids):
                finished_at = time.monotonic()
                break
            time.sleep(0.5)
        drain_s = (finished_at or time.monotonic()) - started
        import httpx

        stats = httpx.get(f"http://127.0.0.1:{port}/admin/stats", timeout=5).json()
        with session_scope() as session:
            statuses = dict(session.execute(select(Request.status, func.count()).where(Request.id.in_(ids))
                                            .group_by(Request.status)).all())
            # The provider limits each model (and key) on its own, and so does the limiter.
            per_model = session.execute(
                select(LlmCall.model, func.count(), func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens))
                .where(LlmCall.cache_hit.is_(False), LlmCall.outcome == "ok")
                .group_by(LlmCall.model)
            ).all()
        headroom = get_settings().provider_headroom
        provider_requests = sum(n for _, n, _ in per_model)
        tokens = sum(t or 0 for _, _, t in per_model)
        min_drain = max(
            (max(n / (args.rpm * (1 - headroom)) * 60 if args.rpm else 0.0,
                 (t or 0) / (args.tpm * (1 - headroom)) * 60 if args.tpm else 0.0) for _, n, t in per_model),
            default=0.0,
        )
        succeeded = statuses.get("succeeded", 0)
        dead = statuses.get("dead_lettered", 0)
        waiting = statuses.get("awaiting_approval", 0) + statuses.get("needs_human", 0)
        return {
            "tickets": len(ids),
            "provider_429": stats.get("rate_limited", 0),
            "drain_s": round(drain_s, 1),
            "min_drain_s": round(min_drain, 1),
            "drain_ratio": round(drain_s / min_drain, 3) if min_drain else None,
            "lost": len(ids) - succeeded - dead - waiting,
            "succeeded": succeeded,
            "dead_lettered": dead,
            "waiting_on_person": waiting,
            "llm_calls": provider_requests,
            "tokens": int(tokens),
            "llm_calls_by_model": {m: n for m, n, _ in per_model},
            "provider_peak_rpm_all_models": stats.get("accepted_per_minute_max"),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--submit-s", type=float, default=60.0, help="spread submissions over this long")
    parser.add_argument("--rpm", type=int, default=100)
    parser.add_argument("--tpm", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2, help="specialist worker processes (>= 2)")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per specialist worker")
    parser.add_argument("--latency", type=float, default=0.5, help="provider latency in seconds")
    parser.add_argument("--deadline-s", type=float, default=3600.0)
    parser.add_argument("--skip-limiter-off", action="store_true", help="only the run with the limiter on")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2 (one process per specialist queue)")
    h.install_signal_handlers()
    result = _phase(args, limiter=True)
    if not args.skip_limiter_off:
        result["limiter_off"] = _phase(args, limiter=False)
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
