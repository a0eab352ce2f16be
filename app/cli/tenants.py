"""`switchboard tenants`, `keys` and `settings`: tenants of the HTTP API, their API keys and settings."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from app.cli.arguments import UNCHANGED, person
from app.cli.output import CommandError, emit
from app.ingress import tenants
from app.observability.spend import by_tenant_day
from app.orchestration import tenant_settings
from app.state import session_scope


def cmd_tenants(args: argparse.Namespace) -> int:
    try:
        if args.tenants_command == "create":
            created = tenants.create_tenant(args.name, rpm_limit=args.rpm, max_concurrent=args.max_concurrent)
            emit(
                args,
                created,
                lambda: print(
                    f"tenant {created.name}: {created.rpm_limit} requests/min, {created.max_concurrent} concurrent\n"
                    f"callback signing secret (shown once): {created.signing_secret}"
                ),
            )
        elif args.tenants_command == "update":
            daily, request = (
                tenants.UNCHANGED if v is UNCHANGED else v
                for v in (args.daily_budget_usd, args.request_budget_usd)
            )
            updated = tenants.update_budgets(args.name, daily_usd=daily, request_usd=request)
            emit(args, updated, lambda: print(f"tenant {updated.name}: {budgets_line(updated)}"))
        else:
            views = tenants.list_tenants()
            today = spend_today()
            listed = [{**v.model_dump(mode="json"), "spend_today": today.get(v.name)} for v in views]
            emit(
                args,
                listed,
                lambda: [
                    print(
                        f"{v.name}\trpm={v.rpm_limit}\tconcurrent={v.max_concurrent}\tkeys={v.keys}\t"
                        f"{budgets_line(v)}\tspent today ${(today.get(v.name) or {}).get('spent_usd', 0):.4f}"
                    )
                    for v in views
                ],
            )
    except tenants.TenantError as exc:
        raise CommandError(str(exc)) from None
    return 0


def budgets_line(view: Any) -> str:
    def one(value: float | None) -> str:
        return "default" if value is None else ("none" if value == 0 else f"${value:g}")

    return f"daily budget {one(view.daily_budget_usd)}, request ceiling {one(view.request_budget_usd)}"


def spend_today() -> dict[str, dict[str, Any]]:
    """Today's (UTC) spend per tenant: spent, in flight and in doubt."""

    with session_scope() as session:
        days = by_tenant_day(session, datetime.now(UTC).date())
    return {d.tenant: d.model_dump(mode="json", exclude={"tenant"}) for d in days}


def cmd_keys(args: argparse.Namespace) -> int:
    try:
        if args.keys_command == "create":
            key = tenants.create_key(args.tenant, scope="read" if args.read_only else "submit")
            emit(
                args,
                key,
                lambda: print(
                    f"key {key.id} for {key.tenant} ({key.scope}); shown once, store it now:\n{key.token}"
                ),
            )
        else:
            revoked = tenants.revoke_key(args.key_id)
            emit(
                args,
                {"id": args.key_id, "revoked": True, "was_active": revoked},
                lambda: print(
                    f"key {args.key_id} revoked" + ("" if revoked else " (it was revoked already)")
                ),
            )
    except tenants.TenantError as exc:
        raise CommandError(str(exc)) from None
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    try:
        if args.settings_command == "set":
            view = tenant_settings.set_value(args.tenant, args.name, args.value, by=person(args))
            emit(args, view, lambda: print(f"{view.tenant}\t{view.name} = {json.dumps(view.value)}"))
        elif args.settings_command == "unset":
            dropped = tenant_settings.unset(args.tenant, args.name)
            emit(
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
            emit(
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
