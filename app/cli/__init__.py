"""`switchboard ...`: every command that reports takes --json and then prints one JSON document."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.errors import CliError


class CommandError(CliError):
    """A user-facing failure: printed without a traceback, exit code 2 (or `code`)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _emit(args: argparse.Namespace, payload: Any, human: Callable[[], object] | None = None) -> None:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    if getattr(args, "json", False) or human is None:
        print(json.dumps(payload, default=str))
    else:
        human()


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.ops.migrate import current, upgrade
    from app.ops.preflight import check_database

    check_database()
    created = upgrade()
    # Per history (the engine's, then each enabled specialist's that owns tables): where it is now.
    histories = {name: found["revision"] for name, found in current().items()}
    _emit(
        args,
        {"database_created": created, "revision": "head", "histories": histories},
        lambda: print(
            ("database created; " if created else "")
            + "at the latest revision: "
            + ", ".join(f"{name} {rev}" for name, rev in histories.items())
        ),
    )
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from app.ops.seeding import seed_enabled

    seeded = seed_enabled()
    _emit(
        args,
        seeded,
        lambda: print(
            "\n".join(
                f"{name}: " + ", ".join(f"{k}={v}" for k, v in counts.items())
                for name, counts in seeded.items()
            )
            or "no enabled specialist has a seed"
        ),
    )
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from app.orchestration.routing import decide

    texts = (line.rstrip("\n") for line in sys.stdin) if args.text == "-" else iter([args.text])
    for text in texts:
        if not text.strip():
            if args.text == "-":
                continue
            raise CommandError("text must not be empty")
        decision = decide(text, use_llm=not args.no_llm)
        _emit(
            args,
            decision,
            partial(print, f"{decision.specialist}\t{decision.confidence:.2f}\t{decision.method}"),
        )
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from app.ingress import client

    metadata = json.loads(args.metadata) if args.metadata else None
    submission = client.submit(
        args.text,
        tenant=args.tenant,
        customer=args.customer,
        priority=args.priority,
        idempotency_key=args.idempotency_key,
        conversation_id=args.conversation,
        metadata=metadata,
    )
    payload: dict[str, Any] = submission.model_dump(mode="json")
    if args.wait:
        try:
            payload.update(client.wait(submission.id, timeout=args.wait).model_dump(mode="json"))
        except TimeoutError as exc:
            payload.update(client.get(submission.id).model_dump(mode="json"))
            payload["wait_timed_out"] = str(exc)
    _emit(args, payload, lambda: print(f"{payload['id']}\t{payload['status']}"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from app.ingress import client

    try:
        view = client.get(args.id)
    except client.RequestNotFound as exc:
        raise CommandError(str(exc), code=1) from None
    _emit(args, view, lambda: print(json.dumps(view.model_dump(mode="json"), indent=2)))
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from app.ops import dlq

    if args.dlq_command == "list":
        items = dlq.dead_letters()
        _emit(
            args,
            [i.model_dump(mode="json") for i in items],
            lambda: [
                print(
                    f"{i.id}\t{i.queue}\tattempts={i.attempts}\t"
                    f"{'' if i.in_record else '(broker only) '}{i.error}"
                )
                for i in items
            ],
        )
    elif args.dlq_command == "show":
        try:
            detail = dlq.show(args.id)
        except LookupError as exc:
            raise CommandError(str(exc), code=1) from None
        _emit(args, detail, lambda: print(json.dumps(detail.model_dump(mode="json"), indent=2)))
    elif args.dlq_command == "purge":
        target = args.queue or "every dead-letter queue"
        if not args.yes:
            if not sys.stdin.isatty():
                raise CommandError(f"purging {target} cannot be undone: pass --yes to confirm")
            if input(f"Purge {target}? Messages are deleted for good. Type 'purge' to confirm: ") != "purge":
                raise CommandError("not purged", code=1)
        try:
            purged = dlq.purge(args.queue)
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        _emit(args, {"purged": purged}, lambda: print(f"purged {sum(purged.values())} message(s)"))
    else:
        if not args.all and not args.id:
            raise CommandError("name a request id to replay, or --all")
        try:
            replayed = dlq.replay_all() if args.all else {args.id: dlq.replay(args.id)}
        except LookupError as exc:
            raise CommandError(str(exc), code=1) from None
        _emit(
            args,
            {"replayed": [{"id": k, "queue": v} for k, v in replayed.items()]},
            lambda: print(f"replayed {len(replayed)} request(s)"),
        )
    return 0


def cmd_pools(args: argparse.Namespace) -> int:
    from app.ops.queue_status import pools

    views = pools()

    def dash(value: object) -> object:
        return "-" if value is None else value

    def table() -> None:
        print(f"depth from: {views[0].depth_source if views else '-'}")
        print(
            f"{'queue':<18}{'ready':>7}{'unacked':>9}{'consumers':>11}{'workers':>9}{'concurrency':>13}"
            f"{'in flight':>11}{'waiting':>9}{'oldest s':>10}"
        )
        for v in views:
            print(
                f"{v.queue:<18}{dash(v.ready):>7}{dash(v.unacked):>9}{dash(v.consumers):>11}{len(v.workers):>9}"
                f"{v.concurrency:>13}{v.in_flight:>11}{dash(v.waiting):>9}{dash(v.oldest_waiting_s):>10}"
            )
            for w in v.workers:
                print(f"  {w.name:<40} concurrency {dash(w.concurrency)}, running {w.active}")

    _emit(args, [v.model_dump(mode="json") for v in views], table)
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    from app.inference.limits_report import build, render_text

    view = build()
    _emit(args, view, lambda: print(render_text(view)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from app.observability.report import build, parse_since, render_text
    from app.observability.report_html import render_html

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    report = build(since)
    if args.html:
        path = Path(args.html)
        try:
            path.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    payload = report.model_dump(mode="json")
    if args.html:
        payload["html"] = str(Path(args.html).resolve())

    def human() -> None:
        print(render_text(report))
        if args.html:
            print(f"  HTML report: {payload['html']}")

    _emit(args, payload, human)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from app.ops.scale import ScaleError, scale

    try:
        report = scale(args.queue, args.n)
    except ScaleError as exc:
        raise CommandError(str(exc)) from None

    def human() -> None:
        print(
            f"{report.queue}: concurrency {report.before} -> {report.after} over "
            f"{report.processes_before} -> {report.processes_after} process(es) (via {report.via})"
        )
        for c in report.changes:
            print(
                f"  {c.name}: {'not running' if c.before is None else c.before} -> "
                f"{'stopped' if c.after is None else c.after}"
            )

    _emit(args, report, human)
    return 0


def cmd_autoscale(args: argparse.Namespace) -> int:
    from app.ops import autoscaler
    from app.ops.scale import ScaleError

    def line(d: autoscaler.Decision) -> str:
        return f"{d.queue}: {d.action} {d.current} -> {d.applied} ({d.reason})"

    def show(d: autoscaler.Decision) -> None:
        _emit(args, d, lambda: print(line(d), flush=True))

    try:
        if args.once:
            decisions = autoscaler.run_once(args.queues or None)

            def table() -> None:
                for d in decisions:
                    print(line(d))

            _emit(args, [d.model_dump(mode="json") for d in decisions], table)
        else:
            # One JSON document per decision with --json, as the loop decides.
            autoscaler.run(args.queues or None, args.interval, report=show)
    except ScaleError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0


def cmd_topology(args: argparse.Namespace) -> int:
    from kombu import Connection

    from app.config import get_settings
    from app.orchestration.topology import TopologyError, declare

    with Connection(get_settings().broker_url.get_secret_value()) as conn:
        try:
            declared = declare(conn)
        except TopologyError as exc:
            raise CommandError(str(exc), code=78) from None
    _emit(args, {"declared": declared}, lambda: print("declared: " + ", ".join(declared)))
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from app.orchestration.approvals import escalate_overdue
    from app.orchestration.reconciler import mark_in_doubt, redispatch_stale, republish_unpublished

    result = {
        "republished": republish_unpublished(min_age_s=args.min_age),
        "redispatched": redispatch_stale(lease_s=args.lease),
        "llm_calls_in_doubt": mark_in_doubt(lease_s=args.lease),
        "approvals_escalated": escalate_overdue(),
    }
    _emit(
        args,
        result,
        lambda: print(
            f"republished {result['republished']}, "
            f"re-dispatched {result['redispatched']} request(s), "
            f"{result['llm_calls_in_doubt']} LLM call(s) marked in doubt, "
            f"escalated {result['approvals_escalated']} approval(s)"
        ),
    )
    return 0


def _person(args: argparse.Namespace) -> str:
    import getpass

    return args.by or getpass.getuser()


def _as_person(act: Callable[[], Any]) -> Any:
    """A person's action on a request: an unknown id exits 1, one not in the needed status 2."""
    from app.ingress import client
    from app.state import transitions as record

    try:
        return act()
    except client.RequestNotFound as exc:
        raise CommandError(str(exc), code=1) from None
    except (record.NotWaiting, ValueError) as exc:
        raise CommandError(str(exc)) from None


def cmd_approvals(args: argparse.Namespace) -> int:
    from app.orchestration import approvals

    if args.approvals_command == "list":
        items = approvals.pending(args.tenant)
        _emit(
            args,
            [i.model_dump(mode="json") for i in items],
            lambda: [
                print(
                    f"{i.request_id}\t{i.tenant}\t{i.tool}\t{json.dumps(i.arguments)}"
                    f"\tdeadline={i.deadline:%Y-%m-%d %H:%M}\t{i.why}"
                )
                for i in items
            ],
        )
        return 0
    view = _as_person(
        lambda: approvals.decide(
            args.id, approve=args.approvals_command == "approve", by=_person(args), reason=args.reason
        )
    )
    _emit(args, view, lambda: print(f"{view.request_id}\t{view.tool}\t{view.decision} by {view.decided_by}"))
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    from app.orchestration.handoffs import inbox

    items = inbox(args.tenant)

    def table() -> None:
        for i in items:
            late = "  PAST SLA" if i.sla_breached else ""
            print(
                f"{i.id}\t{i.tenant}\twaiting {i.waiting_s:.0f}s of {i.sla_s:.0f}s{late}"
                f"\t{i.source}: {i.reason}"
            )
            print(f"    {' '.join(i.text.split())[:200]}")

    _emit(args, [i.model_dump(mode="json") for i in items], table)
    return 0


def cmd_reply(args: argparse.Namespace) -> int:
    from app.orchestration import handoffs

    answer = _as_person(lambda: handoffs.reply(args.id, args.text, by=_person(args)))
    _emit(args, answer, lambda: print(f"{answer['id']}\t{answer['status']}"))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from app.orchestration import tenant_settings

    try:
        if args.settings_command == "set":
            view = tenant_settings.set_value(args.tenant, args.name, args.value, by=_person(args))
            _emit(args, view, lambda: print(f"{view.tenant}\t{view.name} = {json.dumps(view.value)}"))
        elif args.settings_command == "unset":
            dropped = tenant_settings.unset(args.tenant, args.name)
            _emit(
                args,
                {"tenant": args.tenant, "name": args.name, "removed": dropped},
                lambda: print(
                    f"{args.tenant}\t{args.name}: " + ("default again" if dropped else "had no override")
                ),
            )
        else:
            views = tenant_settings.overrides(args.tenant)
            known = [
                {"name": d.name, "default": d.default, "description": d.description}
                for d in tenant_settings.declared().values()
            ]
            payload = {"declared": known, "overrides": [v.model_dump(mode="json") for v in views]}
            _emit(
                args,
                payload,
                lambda: (
                    [
                        print(f"{d['name']}\tdefault {json.dumps(d['default'])}\t{d['description']}")
                        for d in known
                    ],
                    [
                        print(f"{v.tenant}\t{v.name} = {json.dumps(v.value)}\tby {v.updated_by}")
                        for v in views
                    ],
                ),
            )
    except tenant_settings.SettingError as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_procfile(args: argparse.Namespace) -> int:
    from app.ops.pools import procfile

    text = procfile()
    if args.write:
        Path("Procfile").write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _planning_inputs(model: type[BaseModel], **values: Any) -> Any:
    """Validate planning flags, naming the flag that is wrong rather than a model field."""
    from pydantic import ValidationError

    try:
        return model(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = [
            (f"{_flag(str(e['loc'][0]))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise CommandError("; ".join(problems)) from None


def _measured(args: argparse.Namespace, *measured_flags: str, optional: tuple[str, ...] = ()) -> Any:
    """With --from-record: the record's traffic in scope; refuses flags the record would override."""
    from datetime import UTC, datetime, timedelta

    from app.ops.traffic_sample import EmptySample, SampleScope, measure

    if not args.from_record:
        scoping = [
            flag for flag, value in (("--tenant", args.tenant), ("--since-hours", args.since_hours)) if value
        ]
        if scoping:
            raise CommandError(f"{', '.join(scoping)} only scope --from-record")
        missing = [_flag(f) for f in measured_flags if getattr(args, f) is None]
        if missing:
            raise CommandError(f"{', '.join(missing)} required (or --from-record to measure them)")
        return None
    given = [_flag(f) for f in (*measured_flags, *optional) if getattr(args, f) is not None]
    if given:
        raise CommandError(
            f"{', '.join(given)} and --from-record both given: the record measures them; pick one"
        )
    since = datetime.now(UTC) - timedelta(hours=args.since_hours) if args.since_hours else None
    try:
        return measure(SampleScope(tenant=args.tenant, since=since))
    except EmptySample as exc:
        raise CommandError(str(exc), code=1) from None


def cmd_capacity(args: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.ops.capacity import CapacityInputs, explain, plan

    sample = _measured(args, "turns", "llm_seconds", optional=("tokens_per_turn",))
    low, high = args.headroom
    values: dict[str, Any] = {
        "dau": args.dau,
        "concurrency": args.concurrency,
        "think_seconds": args.think_seconds,
        "per_worker": args.per_worker,
        "headroom_low": low,
        "headroom_high": high,
        "turns": args.turns,
        "llm_seconds": args.llm_seconds,
        "tokens_per_turn": args.tokens_per_turn,
    }
    if sample is not None:
        values.update(
            turns=Decimal(str(round(sample.turns_per_conversation, 2))),
            llm_seconds=Decimal(str(round(sample.llm_seconds_per_turn, 3))),
            tokens_per_turn=Decimal(str(round(sample.tokens_per_turn))),
            provider_calls_per_turn=Decimal(str(round(sample.provider_calls_per_turn, 2))),
            source="record",
        )
    result = plan(_planning_inputs(CapacityInputs, **values), get_settings())
    payload = {**result.model_dump(mode="json"), "sample": sample.model_dump(mode="json") if sample else None}
    _emit(args, payload, lambda: print("\n".join(explain(result))))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.ops.cost_estimate import CostInputs, UnknownModel, estimate, explain

    if args.price_per_mtok is not None and args.price_per_mtok <= 0:
        raise CommandError("--price-per-mtok: must be greater than 0")
    sample = _measured(args, "turns", "tokens_per_turn")
    values: dict[str, Any] = {
        "conversations": args.conversations,
        "turns": args.turns,
        "tokens_per_turn": args.tokens_per_turn,
        "output_share": args.output_share,
        "cheap_share": args.cheap_share,
        "days_per_month": args.days_per_month,
    }
    if sample is not None:
        values.update(
            turns=Decimal(str(round(sample.turns_per_conversation, 2))),
            tokens_per_turn=Decimal(str(round(sample.tokens_per_turn))),
            source="record",
        )
        # Measured shares stand unless the operator asks "what if" with a flag.
        if args.output_share is None:
            values["output_share"] = Decimal(str(round(sample.output_share, 4)))
        if args.cheap_share is None:
            values["cheap_share"] = Decimal(str(round(sample.cheap_tier_share, 4)))
    inputs = _planning_inputs(CostInputs, **values)
    try:
        result = estimate(
            inputs,
            get_settings(),
            model=args.model,
            price_per_mtok=args.price_per_mtok,
            recorded_usd_per_mtok=sample.usd_per_mtok if sample else None,
        )
    except UnknownModel as exc:
        raise CommandError(str(exc)) from None
    payload = {**result.model_dump(mode="json"), "sample": sample.model_dump(mode="json") if sample else None}
    _emit(args, payload, lambda: print("\n".join(explain(result))))
    return 0


def cmd_manifests(args: argparse.Namespace) -> int:
    from app.extras import require

    require("deploy", "switchboard manifests")
    from app.ops import compose
    from app.ops.manifests import K8S_DIR, render, write

    if not args.write:
        for path, text in render().items():
            sys.stdout.write(f"# Source: {K8S_DIR / path}\n{text}---\n")
        return 0
    written, removed = write(Path(args.dir))
    compose_file = Path(args.dir).parent / compose.COMPOSE_FILE.name
    if not compose_file.exists() or compose_file.read_text() != compose.render():
        compose_file.write_text(compose.render())
        print(f"wrote {compose_file}")
    for path in written:
        print(f"wrote {Path(args.dir) / path}")
    for path in removed:
        print(f"removed {Path(args.dir) / path} (no such pool any more)")
    if not written and not removed:
        print(f"{args.dir} is up to date")
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    import signal
    import threading

    from app.ops.fleet import Fleet
    from app.ops.supervisor import Supervisor
    from app.orchestration.topology import CALLBACK_QUEUE, work_queue_names

    unknown = [q for q in args.queues or [] if q not in work_queue_names()]
    if unknown:
        raise CommandError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(work_queue_names())}")
    _dev_mode(args)
    queues = args.queues or work_queue_names()
    _refuse_defaults(
        *(["worker"] if set(queues) - {CALLBACK_QUEUE} else []),
        *(["callbacks"] if CALLBACK_QUEUE in queues else []),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    supervisor = Supervisor(Path(args.log_dir))
    fleet = Fleet(supervisor, args.queues or work_queue_names())
    try:
        fleet.start()
        for queue in fleet.queues:
            print(f"started {queue} pool (logs: {supervisor.log_path(queue)})", flush=True)
        # Applies `switchboard scale` / autoscaler targets and heartbeats; crashed processes are
        # restarted by the supervisor's own watcher.
        while not stop.wait(1.0):
            try:
                for change in fleet.reconcile():
                    print(f"scaled {change}", flush=True)
            except Exception as exc:  # noqa: BLE001 - the database or broker blinked: try again next second
                print(f"could not apply pool targets: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        # Also on an unexpected error: no pool outlives its supervisor.
        print(
            "stopping pools (warm shutdown: running tasks finish; Ctrl-C again to kill them, "
            "their messages go back to the queues)...",
            flush=True,
        )
        try:
            fleet.stop()
        except KeyboardInterrupt:
            supervisor.kill()
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    from app.ingress import tenants

    try:
        if args.tenants_command == "create":
            created = tenants.create_tenant(args.name, rpm_limit=args.rpm, max_concurrent=args.max_concurrent)
            _emit(
                args,
                created,
                lambda: print(
                    f"tenant {created.name}: {created.rpm_limit} requests/min, {created.max_concurrent} concurrent\n"
                    f"callback signing secret (shown once): {created.signing_secret}"
                ),
            )
        elif args.tenants_command == "update":
            daily, request = (
                tenants.UNCHANGED if v is _UNCHANGED else v
                for v in (args.daily_budget_usd, args.request_budget_usd)
            )
            updated = tenants.update_budgets(args.name, daily_usd=daily, request_usd=request)
            _emit(args, updated, lambda: print(f"tenant {updated.name}: {_budgets_line(updated)}"))
        else:
            views = tenants.list_tenants()
            today = _spend_today()
            listed = [{**v.model_dump(mode="json"), "spend_today": today.get(v.name)} for v in views]
            _emit(
                args,
                listed,
                lambda: [
                    print(
                        f"{v.name}\trpm={v.rpm_limit}\tconcurrent={v.max_concurrent}\tkeys={v.keys}\t"
                        f"{_budgets_line(v)}\tspent today ${(today.get(v.name) or {}).get('spent_usd', 0):.4f}"
                    )
                    for v in views
                ],
            )
    except tenants.TenantError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _budgets_line(view: Any) -> str:
    def one(value: float | None) -> str:
        return "default" if value is None else ("none" if value == 0 else f"${value:g}")

    return f"daily budget {one(view.daily_budget_usd)}, request ceiling {one(view.request_budget_usd)}"


def _spend_today() -> dict[str, dict[str, Any]]:
    """Today's (UTC) spend per tenant: spent, in flight and in doubt."""
    from datetime import UTC, datetime

    from app.observability.spend import by_tenant_day
    from app.state import session_scope

    with session_scope() as session:
        days = by_tenant_day(session, datetime.now(UTC).date())
    return {d.tenant: d.model_dump(mode="json", exclude={"tenant"}) for d in days}


_UNCHANGED = object()  # a budget flag not given


def _budget_usd(text: str) -> Decimal | None:
    """A budget flag's value: dollars (0: no limit) or `none` (back to the setting's default)."""
    if text.strip().lower() in ("none", "default"):
        return None
    return _decimal(text)


def cmd_keys(args: argparse.Namespace) -> int:
    from app.ingress import tenants

    try:
        if args.keys_command == "create":
            key = tenants.create_key(args.tenant, scope="read" if args.read_only else "submit")
            _emit(
                args,
                key,
                lambda: print(
                    f"key {key.id} for {key.tenant} ({key.scope}); shown once, store it now:\n{key.token}"
                ),
            )
        else:
            revoked = tenants.revoke_key(args.key_id)
            _emit(
                args,
                {"id": args.key_id, "revoked": True, "was_active": revoked},
                lambda: print(
                    f"key {args.key_id} revoked" + ("" if revoked else " (it was revoked already)")
                ),
            )
    except tenants.TenantError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _dev_mode(args: argparse.Namespace) -> None:
    """`--dev`: this process and every process it starts accept the development secrets."""
    import os

    from app.config import reset_settings

    if getattr(args, "dev", False):
        os.environ["SWITCHBOARD_DEV"] = "true"
        reset_settings()


def _refuse_defaults(*roles: str) -> None:
    from app.default_secrets import DefaultSecrets, refuse_defaults

    try:
        for role in roles:
            refuse_defaults(role)
    except DefaultSecrets as exc:
        raise CommandError(str(exc), code=78) from None


def cmd_api(args: argparse.Namespace) -> int:
    import os

    from app.extras import require
    from app.ops.pools import api_argv

    require("api", "the HTTP API")
    _dev_mode(args)
    _refuse_defaults("api")  # here, once, rather than in each server process it would start
    argv = api_argv()
    os.execv(argv[0], argv)  # replaces this process: nothing after it runs


def cmd_flower(args: argparse.Namespace) -> int:
    from app.extras import require
    from app.observability.flower import run_flower

    require("flower", "switchboard flower")

    return run_flower(dev=args.dev)


def cmd_simulator(args: argparse.Namespace) -> int:
    from app.extras import require

    require("demo", "the simulated provider")
    from app.simulator import main as simulator_main

    return simulator_main(args.simulator_args)


def cmd_demo(args: argparse.Namespace) -> int:
    from app.extras import require
    from app.ops.demo import run_demo, stop_demo

    if not args.stop:
        require("demo", "switchboard demo")
        require("flower", "switchboard demo (it starts Flower)")
        require("classifier", "switchboard demo (its router classifies locally)")

    if args.stop:
        return stop_demo()
    return run_demo(
        tickets=args.tickets, keep_running=args.keep_running, as_json=args.json, rpm=args.rpm, tpm=args.tpm
    )


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _share(text: str) -> Decimal:
    """0.03 or 3%."""
    return _decimal(text[:-1]) / 100 if text.endswith("%") else _decimal(text)


def _headroom(text: str) -> tuple[Decimal, Decimal]:
    """2-3 (a range) or 2.5 (one multiplier)."""
    low, sep, high = text.partition("-")
    if not low:
        raise argparse.ArgumentTypeError(f"headroom must be a multiplier or a range like 2-3, not {text!r}")
    return (_decimal(low), _decimal(high) if sep else _decimal(low))


def _positive_hours(text: str) -> float:
    value = float(_decimal(text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 hours, not {text!r}")
    return value


def _record_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from-record",
        action="store_true",
        help="measure turns, LLM time and tokens from the record's succeeded requests",
    )
    p.add_argument("--tenant", help="with --from-record: only this tenant's requests")
    p.add_argument(
        "--since-hours", type=_positive_hours, help="with --from-record: only requests accepted this recently"
    )


DEV_HELP = "accept the development secrets and credentials (local only)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return p

    command("migrate", cmd_migrate, "create the database if missing and apply every migration")
    command("seed", cmd_seed, "load each enabled specialist's own data (the demo's accounts, invoices, ...)")
    p = command("route", cmd_route, "classify a text (or one per line from stdin with '-'); enqueues nothing")
    p.add_argument("text")
    p.add_argument("--no-llm", action="store_true", help="never ask the LLM, even when unsure")
    p = command("submit", cmd_submit, "submit a request")
    p.add_argument("text")
    p.add_argument("--tenant", default="default")
    p.add_argument(
        "--customer",
        help="the end user the request acts for, as your app authenticated them "
        "(the demo: the account's e-mail); its tools see only this customer's data",
    )
    p.add_argument("--priority", default="normal", help="high, normal or low")
    p.add_argument("--idempotency-key")
    p.add_argument("--conversation", help="conversation id: follow-ups share history and specialist")
    p.add_argument("--metadata", help="a JSON object of string/number/boolean values")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait for the result")
    p = command("status", cmd_status, "a request's status, result, tokens, cost and timings")
    p.add_argument("id")
    p = command("dlq", cmd_dlq, "dead letters: list, show, replay", json_flag=False)
    dsub = p.add_subparsers(dest="dlq_command", required=True)
    d = dsub.add_parser("list", help="every dead-lettered request with its error and attempts")
    d.add_argument("--json", action="store_true")
    d = dsub.add_parser("show", help="one dead letter with its events")
    d.add_argument("id")
    d.add_argument("--json", action="store_true")
    d = dsub.add_parser("replay", help="re-run from the last good step")
    d.add_argument("id", nargs="?")
    d.add_argument("--all", action="store_true")
    d.add_argument("--json", action="store_true")
    d = dsub.add_parser("purge", help="delete dead-letter messages for good (asks first)")
    d.add_argument(
        "queue",
        nargs="?",
        help="the DLQ to purge, by its name or its work queue's: billing.dlq or billing (default: all)",
    )
    d.add_argument("--yes", action="store_true", help="do not ask")
    d.add_argument("--json", action="store_true")
    command("pools", cmd_pools, "per queue (and dead-letter queue): depth, consumers, workers, concurrency")
    command(
        "limits", cmd_limits, "every provider rate-limit bucket: configured and learned limit, use, next slot"
    )
    p = command("report", cmd_report, "per-stage latency, throughput, tokens, cost and the bottleneck")
    p.add_argument("--since", default="24h", help="a duration (15m, 2h, 1d) or an ISO timestamp; default 24h")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")
    p = command(
        "scale",
        cmd_scale,
        "set a queue's total concurrency (grows/shrinks pools, adds/stops processes under `workers up`)",
    )
    p.add_argument("queue")
    p.add_argument("n", type=int, metavar="N")
    p = command(
        "autoscale", cmd_autoscale, "scale each queue's pool from its depth, within the provider's rate limit"
    )
    p.add_argument("--once", action="store_true", help="decide once and exit (default: every --interval)")
    p.add_argument("--queues", nargs="*", help="only these queues (default: router and every specialist)")
    p.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between decisions (SWITCHBOARD_AUTOSCALE_INTERVAL_S)",
    )
    command("topology", cmd_topology, "declare exchanges, queues and dead-letter queues")
    p = command(
        "reconcile", cmd_reconcile, "publish requests that never reached the broker; re-dispatch lost ones"
    )
    p.add_argument("--min-age", type=float, default=30.0, help="only requests older than this (seconds)")
    p.add_argument(
        "--lease",
        type=float,
        default=None,
        help="re-dispatch requests silent this long, and mark LLM calls in flight this long "
        "in doubt (default: task time limit + 60 s)",
    )
    p = command(
        "approvals",
        cmd_approvals,
        "tool calls waiting for a person's approval: list, approve, reject",
        json_flag=False,
    )
    asub = p.add_subparsers(dest="approvals_command", required=True)
    a = asub.add_parser("list", help="pending approvals, oldest first")
    a.add_argument("--tenant", help="only this tenant's")
    a.add_argument("--json", action="store_true")
    a = asub.add_parser("approve", help="approve a request's pending call; it resumes at its step")
    a.add_argument("id", help="the request id")
    a.add_argument("--reason", help="recorded with the decision")
    a.add_argument("--by", help="who decides (default: the OS user)")
    a.add_argument("--json", action="store_true")
    a = asub.add_parser("reject", help="reject a request's pending call; the model tells the customer")
    a.add_argument("id", help="the request id")
    a.add_argument("--reason", required=True, help="why (recorded, and told to the model)")
    a.add_argument("--by", help="who decides (default: the OS user)")
    a.add_argument("--json", action="store_true")
    p = command("inbox", cmd_inbox, "requests waiting in the human queue, with their wait against the SLA")
    p.add_argument("--tenant", help="only this tenant's")
    p = command("reply", cmd_reply, "answer a request in the human queue: the text becomes its result")
    p.add_argument("id")
    p.add_argument("text")
    p.add_argument("--by", help="who answers (default: the OS user)")
    p = command(
        "settings", cmd_settings, "per-tenant settings specialists declare: list, set, unset", json_flag=False
    )
    ssub = p.add_subparsers(dest="settings_command", required=True)
    st = ssub.add_parser("list", help="declared settings with defaults, and tenants' overrides")
    st.add_argument("--tenant", help="only this tenant's overrides")
    st.add_argument("--json", action="store_true")
    st = ssub.add_parser("set", help="override a setting for one tenant (VALUE is JSON or a string)")
    st.add_argument("tenant")
    st.add_argument("name")
    st.add_argument("value")
    st.add_argument("--by", help="who sets it (default: the OS user)")
    st.add_argument("--json", action="store_true")
    st = ssub.add_parser("unset", help="drop a tenant's override; the default applies again")
    st.add_argument("tenant")
    st.add_argument("name")
    st.add_argument("--json", action="store_true")
    p = command("procfile", cmd_procfile, "print the Procfile for the current specialists", json_flag=False)
    p.add_argument("--write", action="store_true", help="write ./Procfile")
    p = command("capacity", cmd_capacity, "worker slots for a daily audience, each step shown (see README)")
    p.add_argument("--dau", type=_decimal, required=True, help="daily active users")
    p.add_argument("--concurrency", type=_share, required=True, help="share active at the peak: 0.03 or 3%%")
    p.add_argument("--turns", type=_decimal, help="turns per conversation")
    p.add_argument("--llm-seconds", type=_decimal, help="LLM seconds per turn")
    p.add_argument("--think-seconds", type=_decimal, required=True, help="user think time between turns")
    p.add_argument("--per-worker", type=_decimal, required=True, help="conversations one worker slot carries")
    p.add_argument(
        "--headroom",
        type=_headroom,
        default=(Decimal(2), Decimal(3)),
        help="multiplier or range (default 2-3)",
    )
    p.add_argument("--tokens-per-turn", type=_decimal, help="tokens per turn, to check the provider's TPM")
    _record_flags(p)
    p = command(
        "cost", cmd_cost, "tokens and dollars a day and a month, and the cheap tier's saving (see README)"
    )
    p.add_argument("--conversations", type=_decimal, required=True, help="conversations per day")
    p.add_argument("--turns", type=_decimal, help="turns per conversation")
    p.add_argument("--tokens-per-turn", type=_decimal, help="tokens per turn, prompt and completion")
    price = p.add_mutually_exclusive_group()
    price.add_argument("--model", help="a model priced in SWITCHBOARD_PRICES")
    price.add_argument(
        "--price-per-mtok", type=_decimal, help="USD per million tokens, input and output blended"
    )
    p.add_argument("--output-share", type=_share, help="share of tokens that are output (default 25%%)")
    p.add_argument("--cheap-share", type=_share, help="share of tokens on the cheap tier (default 50%%)")
    p.add_argument("--days-per-month", type=_decimal, help="default 30")
    _record_flags(p)
    p = command(
        "manifests",
        cmd_manifests,
        "Kubernetes manifests (and the compose file) for the current specialists",
        json_flag=False,
    )
    p.add_argument("--write", action="store_true", help="write them under --dir, and compose.yaml beside it")
    p.add_argument("--dir", default="docker/k8s")
    p = command("workers", cmd_workers, "run worker pools under a supervisor", json_flag=False)
    p.add_argument("action", choices=["up"])
    p.add_argument("--queues", nargs="*", help="only these pools (default: router and every specialist)")
    p.add_argument("--log-dir", default=".switchboard/logs")
    p.add_argument("--dev", action="store_true", help=DEV_HELP)
    p = command(
        "tenants", cmd_tenants, "tenants of the HTTP API: create, list, update budgets", json_flag=False
    )
    tsub = p.add_subparsers(dest="tenants_command", required=True)
    t = tsub.add_parser("create", help="a new tenant; prints its callback signing secret once")
    t.add_argument("name")
    t.add_argument("--rpm", type=int, help="requests per minute (default SWITCHBOARD_TENANT_DEFAULT_RPM)")
    t.add_argument(
        "--max-concurrent",
        type=int,
        help="unfinished requests at once (default SWITCHBOARD_TENANT_DEFAULT_MAX_CONCURRENT)",
    )
    t.add_argument("--json", action="store_true")
    t = tsub.add_parser("list", help="every tenant with its limits, budgets, active keys and spend today")
    t.add_argument("--json", action="store_true")
    t = tsub.add_parser("update", help="set a tenant's LLM budgets (USD; 0: no limit; none: the default)")
    t.add_argument("name")
    t.add_argument(
        "--daily-budget-usd",
        type=_budget_usd,
        default=_UNCHANGED,
        help="spend per UTC day (default SWITCHBOARD_TENANT_DAILY_BUDGET_USD)",
    )
    t.add_argument(
        "--request-budget-usd",
        type=_budget_usd,
        default=_UNCHANGED,
        help="ceiling per request (default SWITCHBOARD_REQUEST_BUDGET_USD)",
    )
    t.add_argument("--json", action="store_true")
    p = command("keys", cmd_keys, "API keys: create (shown once), revoke", json_flag=False)
    ksub = p.add_subparsers(dest="keys_command", required=True)
    k = ksub.add_parser("create", help="a new API key for a tenant; the token is shown once")
    k.add_argument("tenant")
    k.add_argument("--read-only", action="store_true", help="may read requests but not submit")
    k.add_argument("--json", action="store_true")
    k = ksub.add_parser("revoke", help="revoke a key by its id (sbk_...)")
    k.add_argument("key_id")
    k.add_argument("--json", action="store_true")
    p = command("api", cmd_api, "serve the HTTP API with uvicorn", json_flag=False)
    p.add_argument("--dev", action="store_true", help=DEV_HELP)
    p = command("flower", cmd_flower, "run Flower with basic auth and the broker API", json_flag=False)
    p.add_argument(
        "--dev",
        action="store_true",
        help="allow running without credentials or on the development ones (local only)",
    )
    p = command("simulator", cmd_simulator, "run the simulated OpenAI-compatible provider", json_flag=False)
    p.add_argument("simulator_args", nargs=argparse.REMAINDER)
    p = command("demo", cmd_demo, "the Monday-morning surge on this machine's services")
    p.add_argument("--tickets", type=int, default=200)
    p.add_argument("--keep-running", action="store_true", help="leave pools, provider and Flower up")
    p.add_argument("--stop", action="store_true", help="stop what --keep-running left up")
    p.add_argument(
        "--rpm",
        type=int,
        help="the provider's requests a minute per key, across models (default "
        "1200; --rpm 100 is the seed's scenario: 200 tickets against 100 RPM)",
    )
    p.add_argument(
        "--tpm", type=int, help="the provider's tokens a minute per key, across models (default: none)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.observability import tracing

    tracing.setup("client")  # submits, replays and re-publishes carry the request's trace
    tracing.continue_from_environment()  # a calling script's TRACEPARENT
    from app.extras import MissingExtra
    from app.ingress.client import InvalidRequest, Overloaded
    from app.ops.preflight import ServiceUnavailable
    from app.orchestration.registry import RegistryError

    try:
        return int(args.fn(args))
    except (CommandError, InvalidRequest, Overloaded, ServiceUnavailable, MissingExtra, RegistryError) as exc:
        code = (
            exc.code if isinstance(exc, CommandError) else (3 if isinstance(exc, ServiceUnavailable) else 2)
        )
        payload: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, Overloaded):
            code = 75  # EX_TEMPFAIL: try again later
            payload.update(
                overloaded=True,
                queue=exc.queue,
                estimated_wait_s=exc.estimated_wait_s,
                retry_after_s=exc.retry_after_s,
            )
        if getattr(args, "json", False):
            print(json.dumps(payload))
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return code
