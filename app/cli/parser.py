"""Every command's flags, and the module that runs it: `handler` names "module:function" in app/cli/.

The parser imports no command module: `switchboard --help` and a wrong flag cost no engine import,
and a command's module (with what it imports) loads only when that command runs (app/cli/dispatch.py).
`needs` names the extras a command checks before its module loads, since that import would fail.
"""

from __future__ import annotations

import argparse
from decimal import Decimal

from app.cli.arguments import UNCHANGED, budget_usd, headroom, number, positive_hours, share

DESCRIPTION = "`switchboard ...`: every command that reports takes --json and then prints one JSON document."
DEV_HELP = "accept the development secrets and credentials (local only)"


def record_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from-record",
        action="store_true",
        help="measure turns, LLM time and tokens from the record's succeeded requests",
    )
    p.add_argument("--tenant", help="with --from-record: only this tenant's requests")
    p.add_argument(
        "--since-hours", type=positive_hours, help="with --from-record: only requests accepted this recently"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: str, help_: str, json_flag: bool = True, needs: tuple[tuple[str, str], ...] = ()
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler, needs=needs)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return p

    command("migrate", "migrate:cmd_migrate", "create the database if missing and apply every migration")
    command(
        "seed",
        "migrate:cmd_seed",
        "load each enabled specialist's own data (the demo's accounts, invoices, ...)",
    )
    p = command(
        "route",
        "requests:cmd_route",
        "classify a text (or one per line from stdin with '-'); enqueues nothing",
    )
    p.add_argument("text")
    p.add_argument("--no-llm", action="store_true", help="never ask the LLM, even when unsure")
    p = command("submit", "requests:cmd_submit", "submit a request")
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
    p = command("status", "requests:cmd_status", "a request's status, result, tokens, cost and timings")
    p.add_argument("id")
    p = command("dlq", "dlq:cmd_dlq", "dead letters: list, show, replay", json_flag=False)
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
    command(
        "pools",
        "pools:cmd_pools",
        "per queue (and dead-letter queue): depth, consumers, workers, concurrency",
    )
    command(
        "limits",
        "limits:cmd_limits",
        "every provider rate-limit bucket: configured and learned limit, use, next slot",
    )
    p = command(
        "report", "report:cmd_report", "per-stage latency, throughput, tokens, cost and the bottleneck"
    )
    p.add_argument("--since", default="24h", help="a duration (15m, 2h, 1d) or an ISO timestamp; default 24h")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with charts")
    p = command(
        "scale",
        "pools:cmd_scale",
        "set a queue's total concurrency (grows/shrinks pools, adds/stops processes under `workers up`)",
    )
    p.add_argument("queue")
    p.add_argument("n", type=int, metavar="N")
    p = command(
        "autoscale",
        "pools:cmd_autoscale",
        "scale each queue's pool from its depth, within the provider's rate limit",
    )
    p.add_argument("--once", action="store_true", help="decide once and exit (default: every --interval)")
    p.add_argument("--queues", nargs="*", help="only these queues (default: router and every specialist)")
    p.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between decisions (SWITCHBOARD_AUTOSCALE_INTERVAL_S)",
    )
    command("topology", "topology:cmd_topology", "declare exchanges, queues and dead-letter queues")
    p = command(
        "reconcile",
        "reconcile:cmd_reconcile",
        "publish requests that never reached the broker; re-dispatch lost ones",
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
        "people:cmd_approvals",
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
    p = command(
        "inbox", "people:cmd_inbox", "requests waiting in the human queue, with their wait against the SLA"
    )
    p.add_argument("--tenant", help="only this tenant's")
    p = command(
        "reply", "people:cmd_reply", "answer a request in the human queue: the text becomes its result"
    )
    p.add_argument("id")
    p.add_argument("text")
    p.add_argument("--by", help="who answers (default: the OS user)")
    p = command(
        "settings",
        "tenants:cmd_settings",
        "per-tenant settings specialists declare: list, set, unset",
        json_flag=False,
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
    p = command(
        "procfile", "pools:cmd_procfile", "print the Procfile for the current specialists", json_flag=False
    )
    p.add_argument("--write", action="store_true", help="write ./Procfile")
    p = command(
        "capacity", "planning:cmd_capacity", "worker slots for a daily audience, each step shown (see README)"
    )
    p.add_argument("--dau", type=number, required=True, help="daily active users")
    p.add_argument("--concurrency", type=share, required=True, help="share active at the peak: 0.03 or 3%%")
    p.add_argument("--turns", type=number, help="turns per conversation")
    p.add_argument("--llm-seconds", type=number, help="LLM seconds per turn")
    p.add_argument("--think-seconds", type=number, required=True, help="user think time between turns")
    p.add_argument("--per-worker", type=number, required=True, help="conversations one worker slot carries")
    p.add_argument(
        "--headroom",
        type=headroom,
        default=(Decimal(2), Decimal(3)),
        help="multiplier or range (default 2-3)",
    )
    p.add_argument("--tokens-per-turn", type=number, help="tokens per turn, to check the provider's TPM")
    record_flags(p)
    p = command(
        "cost",
        "planning:cmd_cost",
        "tokens and dollars a day and a month, and the cheap tier's saving (see README)",
    )
    p.add_argument("--conversations", type=number, required=True, help="conversations per day")
    p.add_argument("--turns", type=number, help="turns per conversation")
    p.add_argument("--tokens-per-turn", type=number, help="tokens per turn, prompt and completion")
    price = p.add_mutually_exclusive_group()
    price.add_argument("--model", help="a model priced in SWITCHBOARD_PRICES")
    price.add_argument(
        "--price-per-mtok", type=number, help="USD per million tokens, input and output blended"
    )
    p.add_argument("--output-share", type=share, help="share of tokens that are output (default 25%%)")
    p.add_argument("--cheap-share", type=share, help="share of tokens on the cheap tier (default 50%%)")
    p.add_argument("--days-per-month", type=number, help="default 30")
    record_flags(p)
    p = command(
        "manifests",
        "manifests:cmd_manifests",
        "Kubernetes manifests (and the compose file) for the current specialists",
        json_flag=False,
        needs=(("deploy", "switchboard manifests"),),
    )
    p.add_argument("--write", action="store_true", help="write them under --dir, and compose.yaml beside it")
    p.add_argument("--dir", default="docker/k8s")
    p = command("workers", "serve:cmd_workers", "run worker pools under a supervisor", json_flag=False)
    p.add_argument("action", choices=["up"])
    p.add_argument("--queues", nargs="*", help="only these pools (default: router and every specialist)")
    p.add_argument("--log-dir", default=".switchboard/logs")
    p.add_argument("--dev", action="store_true", help=DEV_HELP)
    p = command(
        "tenants",
        "tenants:cmd_tenants",
        "tenants of the HTTP API: create, list, update budgets",
        json_flag=False,
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
        type=budget_usd,
        default=UNCHANGED,
        help="spend per UTC day (default SWITCHBOARD_TENANT_DAILY_BUDGET_USD)",
    )
    t.add_argument(
        "--request-budget-usd",
        type=budget_usd,
        default=UNCHANGED,
        help="ceiling per request (default SWITCHBOARD_REQUEST_BUDGET_USD)",
    )
    t.add_argument("--json", action="store_true")
    p = command("keys", "tenants:cmd_keys", "API keys: create (shown once), revoke", json_flag=False)
    ksub = p.add_subparsers(dest="keys_command", required=True)
    k = ksub.add_parser("create", help="a new API key for a tenant; the token is shown once")
    k.add_argument("tenant")
    k.add_argument("--read-only", action="store_true", help="may read requests but not submit")
    k.add_argument("--json", action="store_true")
    k = ksub.add_parser("revoke", help="revoke a key by its id (sbk_...)")
    k.add_argument("key_id")
    k.add_argument("--json", action="store_true")
    p = command(
        "api",
        "serve:cmd_api",
        "serve the HTTP API with uvicorn",
        json_flag=False,
        needs=(("api", "the HTTP API"),),
    )
    p.add_argument("--dev", action="store_true", help=DEV_HELP)
    p = command(
        "flower",
        "serve:cmd_flower",
        "run Flower with basic auth and the broker API",
        json_flag=False,
        needs=(("flower", "switchboard flower"),),
    )
    p.add_argument(
        "--dev",
        action="store_true",
        help="allow running without credentials or on the development ones (local only)",
    )
    p = command(
        "simulator",
        "simulator:cmd_simulator",
        "run the simulated OpenAI-compatible provider",
        json_flag=False,
        needs=(("demo", "the simulated provider"),),
    )
    p.add_argument("simulator_args", nargs=argparse.REMAINDER)
    p = command("demo", "demo:cmd_demo", "the Monday-morning surge on this machine's services")
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
