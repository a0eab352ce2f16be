"""`switchboard capacity` and `switchboard cost`: plans from flags, or from the record's traffic (--from-record)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from app.cli.output import CommandError, emit
from app.config import get_settings
from app.ops import capacity, cost_estimate
from app.ops.traffic_sample import EmptySample, SampleScope, measure


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def planning_inputs(model: type[BaseModel], **values: Any) -> Any:
    """Validate planning flags, naming the flag that is wrong rather than a model field."""
    try:
        return model(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        problems = [
            (f"{flag(str(e['loc'][0]))}: " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        ]
        raise CommandError("; ".join(problems)) from None


def measured(args: argparse.Namespace, *measured_flags: str, optional: tuple[str, ...] = ()) -> Any:
    """With --from-record: the record's traffic in scope; refuses flags the record would override."""

    if not args.from_record:
        scoping = [
            flag for flag, value in (("--tenant", args.tenant), ("--since-hours", args.since_hours)) if value
        ]
        if scoping:
            raise CommandError(f"{', '.join(scoping)} only scope --from-record")
        missing = [flag(f) for f in measured_flags if getattr(args, f) is None]
        if missing:
            raise CommandError(f"{', '.join(missing)} required (or --from-record to measure them)")
        return None
    given = [flag(f) for f in (*measured_flags, *optional) if getattr(args, f) is not None]
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
    sample = measured(args, "turns", "llm_seconds", optional=("tokens_per_turn",))
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
    result = capacity.plan(planning_inputs(capacity.CapacityInputs, **values), get_settings())
    payload = {**result.model_dump(mode="json"), "sample": sample.model_dump(mode="json") if sample else None}
    emit(args, payload, lambda: print("\n".join(capacity.explain(result))))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    if args.price_per_mtok is not None and args.price_per_mtok <= 0:
        raise CommandError("--price-per-mtok: must be greater than 0")
    sample = measured(args, "turns", "tokens_per_turn")
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
    inputs = planning_inputs(cost_estimate.CostInputs, **values)
    try:
        result = cost_estimate.estimate(
            inputs,
            get_settings(),
            model=args.model,
            price_per_mtok=args.price_per_mtok,
            recorded_usd_per_mtok=sample.usd_per_mtok if sample else None,
        )
    except cost_estimate.UnknownModel as exc:
        raise CommandError(str(exc)) from None
    payload = {**result.model_dump(mode="json"), "sample": sample.model_dump(mode="json") if sample else None}
    emit(args, payload, lambda: print("\n".join(cost_estimate.explain(result))))
    return 0
