"""The seed's Monday morning: a burst of tickets against a provider with hard rate limits.

`python bench/surge.py --json [--tickets N] [--account-rpm A] [--tpm T] [--model-rpm M] [--models 1|2]
[--workers W] [--latency S] [--limiter-off]`

Tickets are submitted evenly over `--submit-s` seconds (200 in 60 s by default) to W specialist
worker processes on separate queues, using `--models` model tiers (2: the cheap and the capable
model; 1: both tiers on one model), against the simulated provider enforcing, per API key, A
requests and T tokens a minute across all models (the account level; `--rpm` is the same as
`--account-rpm`) and M requests a minute for each model on its own (0: none). The fleet is
configured with the same limits (SWITCHBOARD_PROVIDER_RPM/_TPM = A/T, SWITCHBOARD_MODEL_LIMITS =
M for each model). Measured from the record and the provider's own counters:

- `provider_429`: rejections the provider answered (target 0);
- `drain_s`: first submission until every ticket is finished;
- `min_drain_s`: the least time the limits (less headroom) allow for the LLM calls and tokens the
  run really used, at the tightest binding level (the account for all models together, or one
  model on its own); `drain_ratio` = drain_s / min_drain_s (target <= 1.1);
- `lost`: tickets not finished (succeeded or dead-lettered) at the deadline (target 0).

The same run is then repeated with per-model buckets only (today's behaviour before limit levels:
each model got the account's limit as its own budget), and with `--limiter-off` once more with the
shared limiter off (each worker calls as fast as it can and relies on retries), for comparison.
Last line: one JSON object {"tickets", "provider_429", "drain_s", "min_drain_s", "drain_ratio",
"lost", ..., "per_model_only": {...}, "limiter_off": {...}}.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _harness as h

MODELS = ("sim-small", "sim-large")


def fleet_limits(args: argparse.Namespace, mode: str) -> dict[str, str]:
    """The limit settings the fleet runs with: every level as the provider enforces it ("levels"),
    each model with the account's limit as its own budget ("per_model_only"), or none."""
    models = MODELS[: args.models]
    if mode == "levels":
        rpm, tpm = args.account_rpm, args.tpm
        per_model = {m: f"{args.model_rpm}/0" for m in models} if args.model_rpm else {}
    elif mode == "per_model_only":
        # What SWITCHBOARD_PROVIDER_RPM/_TPM meant before limit levels: each model's own budget.
        rpm = tpm = 0
        per_model = {m: f"{args.account_rpm}/{args.tpm}" for m in models}
    else:
        rpm = tpm = 0
        per_model = {}
    return {
        "SWITCHBOARD_PROVIDER_RPM": str(rpm),
        "SWITCHBOARD_PROVIDER_TPM": str(tpm),
        "SWITCHBOARD_MODEL_LIMITS": ",".join(f"{m}={v}" for m, v in per_model.items()),
        "SWITCHBOARD_CHEAP_MODEL": models[0],
        "SWITCHBOARD_CAPABLE_MODEL": models[-1],
    }


def min_drain_s(args: argparse.Namespace, headroom: float, per_model: list[tuple[str, int, int]]) -> float:
    """The least time the provider's limits (less headroom) allow for these calls and tokens, at the
    tightest level: the account (all models together) or any one model."""
    usable = 1 - headroom
    calls = sum(n for _, n, _ in per_model)
    tokens = sum(t for _, _, t in per_model)
    bounds = [calls / (args.account_rpm * usable) * 60 if args.account_rpm else 0.0,
              tokens / (args.tpm * usable) * 60 if args.tpm else 0.0]
    if args.model_rpm:
        bounds += [n / (args.model_rpm * usable) * 60 for _, n, _ in per_model]
    return max(bounds)


def _phase(args: argparse.Namespace, *, mode: str) -> dict[str, Any]:
    run_id = h.run_id()
    with contextlib.ExitStack() as stack:
        sb = h.scratch_switchboard(stack, f"surge-{run_id}", {
            **fleet_limits(args, mode),
            "SWITCHBOARD_SPECIALIST_CONCURRENCY": str(args.concurrency),
            "SWITCHBOARD_ROUTER_CONCURRENCY": "8",
        })
        env, port = sb.env, sb.simulator_port
        from app.config import get_settings
        from app.ingress import client
        from app.ops.pools import concurrency_for, pool_specs, simulator_spec, worker_spec
        from app.ops.supervisor import Supervisor
        from app.ops.surge import monday_morning
        from app.orchestration.celery_app import celery
        from app.orchestration.registry import specialists
        from app.state import session_scope
        from specialists.billing.seed import DEMO_TENANT, account_emails, invoice_ids, invoice_owners

        with session_scope() as session:
            emails, invoices, owners = account_emails(session), invoice_ids(session), invoice_owners(session)

        log_dir = Path(".switchboard") / f"bench-surge-{run_id}"
        supervisor = stack.enter_context(Supervisor(log_dir, env=h.child_env(env), restart=False))
        supervisor.start(simulator_spec(None, "--latency-ms", str(int(args.latency * 1000)),
                                        "--account-rpm", str(args.account_rpm),
                                        "--account-tpm", str(args.tpm), "--rpm", str(args.model_rpm)))
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
        h.log(f"{mode}: {len(tickets)} tickets over {args.submit_s:g}s, provider {args.account_rpm} RPM / "
              f"{args.tpm} TPM per key across models, {args.model_rpm or 'no'} RPM per model, {args.models} "
              f"model(s), {args.workers} specialist worker processes")
        started = time.monotonic()
        ids = []
        for i, ticket in enumerate(tickets):
            delay = started + i * args.submit_s / len(tickets) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ids.append(client.submit(ticket.text, tenant=ticket.tenant, customer=ticket.customer,
                                     priority=ticket.priority).id)
        from sqlalchemy import func, select

        from app.state import LlmCall, Request

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
            per_model = session.execute(
                select(LlmCall.model, func.count(), func.sum(LlmCall.prompt_tokens + LlmCall.completion_tokens))
                .where(LlmCall.cache_hit.is_(False), LlmCall.outcome == "ok")
                .group_by(LlmCall.model)
            ).all()
        used = [(m, int(n), int(t or 0)) for m, n, t in per_model]
        provider_requests = sum(n for _, n, _ in used)
        tokens = sum(t for _, _, t in used)
        min_drain = min_drain_s(args, get_settings().provider_headroom, used)
        succeeded = statuses.get("succeeded", 0)
        dead = statuses.get("dead_lettered", 0)
        waiting = statuses.get("awaiting_approval", 0) + statuses.get("needs_human", 0)
        return {
            "tickets": len(ids),
            "fleet_limits": fleet_limits(args, mode),
            "provider_429": stats.get("rate_limited", 0),
            "provider_429_by_level": stats.get("rate_limited_by_level", {}),
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
            "provider_peak_rpm_by_model": stats.get("accepted_per_minute_max_by_model"),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--submit-s", type=float, default=60.0, help="spread submissions over this long")
    parser.add_argument("--account-rpm", "--rpm", dest="account_rpm", type=int, default=100,
                        help="requests a minute per key, across all models (default 100)")
    parser.add_argument("--tpm", type=int, default=200_000, help="tokens a minute per key, across all models")
    parser.add_argument("--model-rpm", type=int, default=0,
                        help="requests a minute per key and model (0: none)")
    parser.add_argument("--models", type=int, default=2, choices=[1, 2],
                        help="model tiers in use: 2 (cheap and capable models) or 1 (both on one model)")
    parser.add_argument("--workers", type=int, default=2, help="specialist worker processes (>= 2)")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per specialist worker")
    parser.add_argument("--latency", type=float, default=0.5, help="provider latency in seconds")
    parser.add_argument("--deadline-s", type=float, default=3600.0)
    parser.add_argument("--skip-per-model-only", action="store_true",
                        help="no comparison with per-model buckets")
    parser.add_argument("--limiter-off", action="store_true", help="also compare with the shared limiter off")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2 (one process per specialist queue)")
    if args.account_rpm < 0 or args.model_rpm < 0 or args.tpm < 0 or not (args.account_rpm or args.model_rpm):
        parser.error("limits must be 0 or more, and --account-rpm or --model-rpm more than 0")
    h.install_signal_handlers()
    result = _phase(args, mode="levels")
    if not args.skip_per_model_only:
        result["per_model_only"] = _phase(args, mode="per_model_only")
    if args.limiter_off:
        result["limiter_off"] = _phase(args, mode="limiter_off")
    h.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
